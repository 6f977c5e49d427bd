/* embeddings.c — the OpenAI embeddings answer for every OpenAI-dialect
 * provider: one unit-length vector per input, made by a PRNG seeded from a
 * hash of the input (so the same text always gets the same vector), printed
 * as float numbers or as base64 of little-endian float32, with usage from
 * the simulator's own counting (sim/count.c). The plan and the parsed
 * request come in; the JSON body leaves in a sim_buf_t. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sim/simulate_int.h"

/* FNV-1a over bytes: the seed of an input's vector. */
static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t seed_of(const json_t *in) {
    uint64_t h = 0xcbf29ce484222325ULL;
    if (json_is_string(in)) return fnv1a(h, json_string_value(in), json_string_length(in));
    size_t i;
    json_t *t;
    json_array_foreach(in, i, t) {
        unsigned char le[8];
        uint64_t v = (uint64_t)json_integer_value(t);
        for (int k = 0; k < 8; k++)
            le[k] = (unsigned char)(v >> (8 * k));
        h = fnv1a(h, le, sizeof(le));
    }
    return h;
}

static void vector(float *v, int64_t dims, uint64_t seed) {
    double sum = 0;
    for (int64_t i = 0; i < dims; i++) {
        double u = (double)(splitmix64(&seed) >> 11) / 9007199254740992.0; /* [0, 1) */
        v[i] = (float)(2 * u - 1);
        sum += (double)v[i] * v[i];
    }
    double norm = sum > 0 ? sqrt(sum) : 1;
    for (int64_t i = 0; i < dims; i++)
        v[i] = (float)(v[i] / norm);
}

static void put_base64(sim_buf_t *b, const float *v, int64_t dims) {
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = (size_t)dims * 4;
    unsigned char *raw = malloc(n);
    char *out = malloc((n + 2) / 3 * 4 + 1);
    if (raw == NULL || out == NULL) {
        b->oom = 1;
        free(raw);
        free(out);
        return;
    }
    for (int64_t i = 0; i < dims; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++)
            raw[i * 4 + k] = (unsigned char)(u >> (8 * k));
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t x = (uint32_t)raw[i] << 16 | (i + 1 < n ? (uint32_t)raw[i + 1] << 8 : 0) |
                     (i + 2 < n ? raw[i + 2] : 0);
        out[o++] = al[x >> 18 & 63];
        out[o++] = al[x >> 12 & 63];
        out[o++] = i + 1 < n ? al[x >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? al[x & 63] : '=';
    }
    sim_put(b, out, o);
    free(raw);
    free(out);
}

/* The default size of the model's vectors, as the vendors document them. */
static int64_t default_dims(const char *model) {
    if (strstr(model, "text-embedding-3-large")) return 3072;
    if (strstr(model, "text-embedding-v4")) return 1024;
    return 1536;
}

static void one(sim_buf_t *b, const sim_plan_t *p, const json_t *in, size_t index, int64_t dims, float *v) {
    vector(v, dims, seed_of(in));
    sim_printf(b, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", index ? "," : "", index);
    if (p->b64) {
        sim_puts(b, "\"");
        put_base64(b, v, dims);
        sim_puts(b, "\"}");
        return;
    }
    sim_puts(b, "[");
    for (int64_t i = 0; i < dims; i++)
        sim_printf(b, i ? ",%.9g" : "%.9g", (double)v[i]);
    sim_puts(b, "]}");
}

/* 0, or -1 when out of memory. */
int sim_embeddings_whole(sim_buf_t *b, const sim_plan_t *p) {
    const json_t *input = json_object_get(p->doc, "input");
    int64_t dims = p->dims > 0 ? p->dims : default_dims(json_string_value(json_object_get(p->doc, "model")));
    float *v = malloc((size_t)dims * sizeof(*v));
    if (v == NULL) return -1;
    sim_puts(b, "{\"object\":\"list\",\"data\":[");
    if (json_is_string(input) || json_is_integer(json_array_get(input, 0))) {
        one(b, p, input, 0, dims, v);
    } else {
        size_t i;
        json_t *in;
        json_array_foreach(input, i, in) one(b, p, in, i, dims, v);
    }
    free(v);
    sim_printf(b,
               "],\"model\":\"%s\",\"usage\":{\"prompt_tokens\":%" PRId64 ",\"total_tokens\":%" PRId64 "}}",
               p->model, p->prompt, p->prompt);
    return b->oom ? -1 : 0;
}
