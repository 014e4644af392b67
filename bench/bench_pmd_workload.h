/*
 * The workloads of the permessage-deflate benchmarks (bench_pmd.c, bench_pmd_load.c),
 * generated from a seed so every tool and every run sees the same bytes:
 *
 *   json    JSON-like events of 120-1200 bytes (a trading/chat feed: a few fixed keys,
 *           numbers, timestamps, symbols, user records and a sentence of words from a
 *           small vocabulary). Messages resemble each other, as real feeds do, without
 *           repeating: context takeover helps, but each message has new content.
 *   binary  uniformly random bytes of the same sizes: incompressible.
 *
 * Header-only; include it from one .c file.
 */
#ifndef KITE_BENCH_PMD_WORKLOAD_H
#define KITE_BENCH_PMD_WORKLOAD_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum pmd_workload { PMD_WL_JSON = 0, PMD_WL_BINARY = 1 };

/* xorshift64*: small and deterministic. */
static inline uint64_t pmd_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ull;
}

static const char *const pmd_words[] = {
    "the",     "order",   "market",    "price",    "update",  "filled", "partial", "cancel",
    "user",    "session", "connected", "latency",  "server",  "client", "room",    "message",
    "hello",   "world",   "status",    "pending",  "active",  "closed", "limit",   "stop",
    "account", "balance", "deposit",   "withdraw", "network", "fee",    "confirm", "block",
    "quick",   "brown",   "fox",       "jumps",    "over",    "lazy",   "dog",     "again",
    "alpha",   "beta",    "gamma",     "delta",    "signal",  "noise",  "peer",    "frame",
};
static const char *const pmd_symbols[] = {"BTC-USD", "ETH-USD", "SOL-USD", "ADA-EUR",
                                          "XRP-USD", "DOT-EUR", "LTC-USD", "AVAX-USD"};
static const char *const pmd_types[] = {"trade", "quote", "chat", "presence", "order"};

/* Message `i` of a json workload into out[0..cap) (cap >= 1400); returns its length. */
static inline size_t pmd_json_message(char *out, size_t cap, uint64_t seed, unsigned i)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + i + 1;
    pmd_rand(&s);
    size_t target = 120 + (size_t)(pmd_rand(&s) % 1081); /* 120-1200 */
    unsigned uid = (unsigned)(pmd_rand(&s) % 5000);
    int n = snprintf(out, cap,
                     "{\"type\":\"%s\",\"seq\":%u,\"ts\":\"2024-05-%02uT%02u:%02u:%02u.%03uZ\","
                     "\"symbol\":\"%s\",\"price\":\"%u.%02u\",\"size\":\"0.%04u\",\"side\":\"%s\","
                     "\"user\":{\"id\":%u,\"name\":\"user%u\",\"verified\":%s},\"text\":\"",
                     pmd_types[pmd_rand(&s) % 5], 100000 + i, (unsigned)(1 + i / 86400 % 28),
                     (unsigned)(i / 3600 % 24), (unsigned)(i / 60 % 60), (unsigned)(i % 60),
                     (unsigned)(pmd_rand(&s) % 1000), pmd_symbols[pmd_rand(&s) % 8],
                     (unsigned)(100 + pmd_rand(&s) % 90000), (unsigned)(pmd_rand(&s) % 100),
                     (unsigned)(pmd_rand(&s) % 10000), (pmd_rand(&s) & 1) ? "buy" : "sell", uid,
                     uid, (pmd_rand(&s) & 1) ? "true" : "false");
    size_t len = (size_t)n;
    size_t nw = sizeof(pmd_words) / sizeof(pmd_words[0]);
    while (len + 40 < target && len + 40 < cap) {
        const char *w = pmd_words[pmd_rand(&s) % nw];
        size_t wl = strlen(w);
        if (len && out[len - 1] != '"')
            out[len++] = ' ';
        memcpy(out + len, w, wl);
        len += wl;
    }
    n = snprintf(out + len, cap - len, "\",\"n\":%u}", (unsigned)(pmd_rand(&s) % 1000000));
    return len + (size_t)n;
}

/* Message `i` of workload `wl` into out[0..cap) (cap >= 1400); returns its length. */
static inline size_t pmd_message(enum pmd_workload wl, uint8_t *out, size_t cap, uint64_t seed,
                                 unsigned i)
{
    size_t len = pmd_json_message((char *)out, cap, seed, i);
    if (wl == PMD_WL_BINARY) {
        uint64_t s = (seed ^ 0xB1A5ull) * 0x9E3779B97F4A7C15ull + i + 1;
        for (size_t k = 0; k < len; k++)
            out[k] = (uint8_t)(pmd_rand(&s) >> 56);
    }
    return len;
}

#endif
