/*
 * Unit tests for permessage-deflate negotiation (RFC 7692 §5, §7.1) on both sides: the
 * server's answer to every parameter, with and without values, invalid values,
 * duplicates, unknown parameters, several offers and the server's own preferences; the
 * client's offer for each preset and its check of the server's answer.
 */
#include "codec/conn_internal.h"
#include "codec/pmd.h"
#include "test.h"

/* A server config with no preferences of its own (windows 15, context takeover). */
static void plain_server(struct kite_pmd_config *c)
{
    kite_pmd_config_preset(c, KITE_PMD_SPEED);
}

/* The server's answer to `offer`: the response value, "DECLINED" (no chain), or
 * "ERROR <code>". The chain's agreement goes to *pp when pp is not NULL. */
static const char *answer(const struct kite_pmd_config *cfg, const char *offer,
                          struct kite_pmd_params *pp)
{
    static char out[512];
    struct kite_ext_list *l = kite_ext_list_new(NULL);
    ASSERT_EQ(kite_ext_list_install(l, &kite_ext_permessage_deflate, cfg), KITE_OK);
    struct kite_ext_chain *ch = (struct kite_ext_chain *)1;
    int rc = kite_ext_negotiate(l, KITE_MODE_DEFAULT, offer, offer ? strlen(offer) : 0, NULL, &ch);
    if (rc != KITE_OK) {
        ASSERT(ch == NULL);
        snprintf(out, sizeof(out), "ERROR %d", rc);
    } else if (!ch) {
        snprintf(out, sizeof(out), "DECLINED");
    } else {
        snprintf(out, sizeof(out), "%s", kite_ext_chain_header(ch, NULL));
        if (pp)
            ASSERT_EQ(kite_pmd_params(kite_ext_chain_get(ch, &kite_ext_permessage_deflate), pp),
                      KITE_OK);
    }
    kite_ext_chain_free(ch);
    kite_ext_list_free(l);
    return out;
}

#define PMD "permessage-deflate"

/* §7.1: each parameter, alone, with the answer a plain server gives. */
TEST(server_answers_each_parameter)
{
    struct kite_pmd_config c;
    plain_server(&c);
    struct kite_pmd_params pp;
    ASSERT_STREQ(answer(&c, PMD, &pp), PMD);
    ASSERT_EQ(pp.server_max_window_bits, 15);
    ASSERT_EQ(pp.client_max_window_bits, 15);
    ASSERT(!pp.server_no_context_takeover && !pp.client_no_context_takeover);
    /* §7.1.1.1: accepted by including it. */
    ASSERT_STREQ(answer(&c, PMD "; server_no_context_takeover", &pp),
                 PMD "; server_no_context_takeover");
    ASSERT(pp.server_no_context_takeover);
    /* §7.1.1.2: echoed, which makes the client's hint binding. */
    ASSERT_STREQ(answer(&c, PMD "; client_no_context_takeover", &pp),
                 PMD "; client_no_context_takeover");
    ASSERT(pp.client_no_context_takeover);
    /* §7.1.2.1: the same or a smaller value. */
    ASSERT_STREQ(answer(&c, PMD "; server_max_window_bits=10", &pp),
                 PMD "; server_max_window_bits=10");
    ASSERT_EQ(pp.server_max_window_bits, 10);
    ASSERT_STREQ(answer(&c, PMD "; server_max_window_bits=8", &pp),
                 PMD "; server_max_window_bits=8");
    ASSERT_EQ(pp.server_max_window_bits, 8);
    ASSERT_STREQ(answer(&c, PMD "; server_max_window_bits=15", NULL),
                 PMD "; server_max_window_bits=15");
    /* §7.1.2.2: without a value the server may leave it out (we then inflate with 15);
     * with one, the answer is at most that. */
    ASSERT_STREQ(answer(&c, PMD "; client_max_window_bits", &pp), PMD);
    ASSERT_EQ(pp.client_max_window_bits, 15);
    ASSERT_STREQ(answer(&c, PMD "; client_max_window_bits=12", &pp),
                 PMD "; client_max_window_bits=12");
    ASSERT_EQ(pp.client_max_window_bits, 12);
    /* §9.1: a quoted-string value is its unescaped content. */
    ASSERT_STREQ(answer(&c, PMD "; server_max_window_bits=\"11\"", NULL),
                 PMD "; server_max_window_bits=11");
    ASSERT_STREQ(answer(&c, PMD "; server_max_window_bits=\"1\\2\"", NULL),
                 PMD "; server_max_window_bits=12");
    /* All four at once. */
    ASSERT_STREQ(answer(&c,
                        PMD "; client_max_window_bits=9; server_max_window_bits=9; "
                            "client_no_context_takeover; server_no_context_takeover",
                        &pp),
                 PMD "; server_no_context_takeover; client_no_context_takeover; "
                     "server_max_window_bits=9; client_max_window_bits=9");
    ASSERT_EQ(pp.client_max_window_bits, 9);
}

/* §7.1: a malformed, duplicated or unknown parameter makes the offer unacceptable: it
 * is declined (no extension), which is not a handshake failure. */
TEST(server_declines_bad_offers)
{
    struct kite_pmd_config c;
    plain_server(&c);
    static const char *bad[] = {
        PMD "; server_max_window_bits",   /* §7.1.2.1: a value is required */
        PMD "; server_max_window_bits=7", /* 8-15 */
        PMD "; server_max_window_bits=16",
        PMD "; server_max_window_bits=abc",
        PMD "; server_max_window_bits=010", /* no leading zeroes */
        PMD "; server_max_window_bits=08",
        PMD "; server_max_window_bits=-9",
        PMD "; server_max_window_bits=\"\\31\\30\"", /* unescapes to "3130" */
        PMD "; client_max_window_bits=7",
        PMD "; client_max_window_bits=16",
        PMD "; client_max_window_bits=0x9",
        PMD "; server_no_context_takeover=1", /* §7.1.1.1: no value */
        PMD "; client_no_context_takeover=true",
        PMD "; server_no_context_takeover; server_no_context_takeover", /* duplicates */
        PMD "; client_max_window_bits; client_max_window_bits=10",
        PMD "; server_max_window_bits=10; server_max_window_bits=10",
        PMD "; x_unknown",                  /* unknown */
        PMD "; Server_No_Context_Takeover", /* names are case-sensitive */
    };
    for (size_t i = 0; i < KITE_ARRAY_LEN(bad); i++) {
        const char *got = answer(&c, bad[i], NULL);
        if (strcmp(got, "DECLINED") != 0) {
            fprintf(stderr, "# offer %s -> %s\n", bad[i], got);
            ASSERT(0);
        }
    }
    /* Broken §9.1 grammar is a handshake error (400), not a decline. */
    ASSERT_STREQ(answer(&c, PMD ";;", NULL), "ERROR -5105");
    ASSERT_STREQ(answer(&c, PMD "; a=\"\"", NULL), "ERROR -5105");
    /* No offer, or offers of other extensions only. */
    ASSERT_STREQ(answer(&c, NULL, NULL), "DECLINED");
    ASSERT_STREQ(answer(&c, "", NULL), "DECLINED");
    ASSERT_STREQ(answer(&c, "x-webkit-deflate-frame", NULL), "DECLINED");
}

/* §5: several offers, in the client's order of preference; the first acceptable one
 * wins, whatever sits around it. */
TEST(server_picks_the_first_acceptable_offer)
{
    struct kite_pmd_config c;
    plain_server(&c);
    ASSERT_STREQ(
        answer(&c, PMD "; server_max_window_bits=7, " PMD "; client_max_window_bits", NULL), PMD);
    ASSERT_STREQ(answer(&c, PMD "; server_max_window_bits=10, " PMD, NULL),
                 PMD "; server_max_window_bits=10");
    ASSERT_STREQ(answer(&c, PMD "; x=1, " PMD "; bogus, " PMD "; server_no_context_takeover", NULL),
                 PMD "; server_no_context_takeover");
    ASSERT_STREQ(answer(&c, "x-foo; a=b, " PMD "; client_max_window_bits=11, bar", NULL),
                 PMD "; client_max_window_bits=11");
    ASSERT_STREQ(answer(&c, "Permessage-Deflate", NULL), PMD); /* names: ASCII case */
    ASSERT_STREQ(answer(&c, PMD "; x, " PMD "; y", NULL), "DECLINED");
}

/* The server's own preferences shape the answer, always within the offer. */
TEST(server_preferences)
{
    struct kite_pmd_config c;
    plain_server(&c);
    c.server_max_window_bits = 10;
    struct kite_pmd_params pp;
    /* §7.1.2.1: a server may announce its window even when not asked. */
    ASSERT_STREQ(answer(&c, PMD, &pp), PMD "; server_max_window_bits=10");
    ASSERT_EQ(pp.server_max_window_bits, 10);
    ASSERT_STREQ(answer(&c, PMD "; server_max_window_bits=12", NULL),
                 PMD "; server_max_window_bits=10");
    ASSERT_STREQ(answer(&c, PMD "; server_max_window_bits=9", NULL),
                 PMD "; server_max_window_bits=9");

    plain_server(&c);
    c.client_max_window_bits = 10;
    /* §7.1.2.2: only when offered; at most the offered value. */
    ASSERT_STREQ(answer(&c, PMD, &pp), PMD);
    ASSERT_EQ(pp.client_max_window_bits, 15);
    ASSERT_STREQ(answer(&c, PMD "; client_max_window_bits", &pp),
                 PMD "; client_max_window_bits=10");
    ASSERT_EQ(pp.client_max_window_bits, 10);
    ASSERT_STREQ(answer(&c, PMD "; client_max_window_bits=9", NULL),
                 PMD "; client_max_window_bits=9");

    plain_server(&c);
    c.server_no_context_takeover = true;
    c.client_no_context_takeover = true;
    /* §7.1.1: both may be put in any response. */
    ASSERT_STREQ(answer(&c, PMD, &pp),
                 PMD "; server_no_context_takeover; client_no_context_takeover");
    ASSERT(pp.server_no_context_takeover && pp.client_no_context_takeover);
}

/* Property: over many generated offers, an answer never goes beyond its offer. */
TEST(server_answer_is_always_within_the_offer)
{
    static const char *vals[] = {NULL, "8", "9", "12", "15", "7", "abc"};
    struct kite_pmd_config c;
    int accepted = 0;
    for (int cfgi = 0; cfgi < 3; cfgi++) {
        plain_server(&c);
        c.server_max_window_bits = (uint8_t)(cfgi == 1 ? 9 : 15);
        c.client_max_window_bits = (uint8_t)(cfgi == 2 ? 11 : 15);
        for (size_t s = 0; s < KITE_ARRAY_LEN(vals); s++) {
            for (size_t k = 0; k < KITE_ARRAY_LEN(vals); k++) {
                char offer[200];
                int n = snprintf(offer, sizeof(offer), PMD);
                if (s)
                    n += snprintf(offer + n, sizeof(offer) - (size_t)n,
                                  "; server_max_window_bits=%s", vals[s]);
                if (k == 0)
                    n += snprintf(offer + n, sizeof(offer) - (size_t)n, "; client_max_window_bits");
                else if (k > 1)
                    n += snprintf(offer + n, sizeof(offer) - (size_t)n,
                                  "; client_max_window_bits=%s", vals[k]);
                struct kite_pmd_params pp;
                const char *got = answer(&c, offer, &pp);
                bool s_bad = s >= 5, k_bad = k >= 5;
                if (s_bad || k_bad) {
                    ASSERT_STREQ(got, "DECLINED");
                    continue;
                }
                accepted++;
                int smax = s ? atoi(vals[s]) : 15;
                ASSERT(pp.server_max_window_bits <= smax);
                ASSERT(pp.server_max_window_bits <= c.server_max_window_bits);
                if (k == 1) /* not offered: must not appear */
                    ASSERT(strstr(got, "client_max_window_bits") == NULL);
                if (k > 1)
                    ASSERT(pp.client_max_window_bits <= atoi(vals[k]));
            }
        }
    }
    ASSERT(accepted > 40);
}

/* ------------------------------------------------------------------------------------
 * Client side
 */

static const char *offer_of(const struct kite_pmd_config *c)
{
    static char out[512];
    struct kite_ext_list *l = kite_ext_list_new(NULL);
    ASSERT_EQ(kite_ext_list_install(l, &kite_ext_permessage_deflate, c), KITE_OK);
    ssize_t n = kite_ext_offer(l, KITE_MODE_DEFAULT, out, sizeof(out));
    ASSERT(n >= 0 && (size_t)n < sizeof(out));
    /* snprintf semantics: a short buffer gets a prefix and the full length. */
    char tiny[8];
    ASSERT_EQ(kite_ext_offer(l, KITE_MODE_DEFAULT, tiny, sizeof(tiny)), n);
    ASSERT_EQ(strlen(tiny), 7);
    ASSERT_EQ(kite_ext_offer(l, KITE_MODE_DEFAULT, NULL, 0), n);
    kite_ext_list_free(l);
    return out;
}

TEST(client_offers)
{
    struct kite_pmd_config c;
    kite_pmd_config_preset(&c, KITE_PMD_SPEED);
    ASSERT_STREQ(offer_of(&c), PMD "; client_max_window_bits");
    kite_pmd_config_preset(&c, KITE_PMD_BALANCED);
    ASSERT_STREQ(offer_of(&c), PMD "; server_max_window_bits=13; client_max_window_bits=13, " PMD
                                   "; client_max_window_bits=13");
    kite_pmd_config_preset(&c, KITE_PMD_MEMORY);
    ASSERT_STREQ(offer_of(&c), PMD "; server_no_context_takeover; client_no_context_takeover; "
                                   "client_max_window_bits, " PMD
                                   "; client_no_context_takeover; client_max_window_bits");
    c.offer_fallback = false;
    c.offer_client_max_window_bits = false;
    ASSERT_STREQ(offer_of(&c), PMD "; server_no_context_takeover; client_no_context_takeover");
    /* Every offer kite makes is one a kite server accepts. */
    for (int p = 0; p < 4; p++) {
        kite_pmd_config_preset(&c, (enum kite_pmd_preset)p);
        struct kite_pmd_config s;
        plain_server(&s);
        ASSERT(strcmp(answer(&s, offer_of(&c), NULL), "DECLINED") != 0);
    }
}

/* The client's check of an answer: KITE_OK or KITE_ERR_HANDSHAKE. */
static int check(const struct kite_pmd_config *c, const char *resp, struct kite_pmd_params *pp)
{
    struct kite_ext_list *l = kite_ext_list_new(NULL);
    ASSERT_EQ(kite_ext_list_install(l, &kite_ext_permessage_deflate, c), KITE_OK);
    struct kite_ext_chain *ch = (struct kite_ext_chain *)1;
    int rc = kite_ext_accept(l, KITE_MODE_DEFAULT, resp, strlen(resp), NULL, &ch);
    if (rc != KITE_OK)
        ASSERT(ch == NULL);
    if (rc == KITE_OK && pp)
        ASSERT_EQ(kite_pmd_params(kite_ext_chain_get(ch, &kite_ext_permessage_deflate), pp),
                  KITE_OK);
    kite_ext_chain_free(ch);
    kite_ext_list_free(l);
    return rc;
}

/* §7.1: a client refuses an answer beyond what it offered (and must then fail the
 * WebSocket connection, RFC 6455 §4.1). */
TEST(client_checks_the_answer)
{
    const int H = KITE_ERR_HANDSHAKE;
    struct kite_pmd_config c;
    kite_pmd_config_preset(&c, KITE_PMD_SPEED);
    c.offer_fallback = false;
    c.server_no_context_takeover = true;
    c.server_max_window_bits = 10;
    c.client_max_window_bits = 12;
    struct kite_pmd_params pp;
    const char *ok = PMD "; server_no_context_takeover; server_max_window_bits=10";
    ASSERT_EQ(check(&c, ok, &pp), KITE_OK);
    ASSERT(pp.server_no_context_takeover);
    ASSERT_EQ(pp.server_max_window_bits, 10);
    ASSERT_EQ(pp.client_max_window_bits, 12); /* our own limit */
    ASSERT_EQ(check(&c, PMD "; server_no_context_takeover; server_max_window_bits=9", &pp),
              KITE_OK);
    ASSERT_EQ(pp.server_max_window_bits, 9);
    /* §7.1.1.1: asked for, so it must be there. */
    ASSERT_EQ(check(&c, PMD "; server_max_window_bits=10", NULL), H);
    /* §7.1.2.1: larger than requested, or missing. */
    ASSERT_EQ(check(&c, PMD "; server_no_context_takeover; server_max_window_bits=11", NULL), H);
    ASSERT_EQ(check(&c, PMD "; server_no_context_takeover", NULL), H);
    /* §7.1.2.2: not above what we offered; a value is required in an answer. */
    ASSERT_EQ(check(&c,
                    PMD "; server_no_context_takeover; server_max_window_bits=10; "
                        "client_max_window_bits=12",
                    &pp),
              KITE_OK);
    ASSERT_EQ(check(&c,
                    PMD "; server_no_context_takeover; server_max_window_bits=10; "
                        "client_max_window_bits=9",
                    &pp),
              KITE_OK);
    ASSERT_EQ(pp.client_max_window_bits, 9);
    ASSERT_EQ(check(&c,
                    PMD "; server_no_context_takeover; server_max_window_bits=10; "
                        "client_max_window_bits=13",
                    NULL),
              H);
    ASSERT_EQ(check(&c,
                    PMD "; server_no_context_takeover; server_max_window_bits=10; "
                        "client_max_window_bits",
                    NULL),
              H);
    /* §7.1.1.2: the server may always ask us not to take over context. */
    ASSERT_EQ(check(&c,
                    PMD "; server_no_context_takeover; server_max_window_bits=10; "
                        "client_no_context_takeover",
                    &pp),
              KITE_OK);
    ASSERT(pp.client_no_context_takeover);
    /* Malformed, duplicated, unknown. */
    ASSERT_EQ(check(&c, PMD "; server_no_context_takeover; server_max_window_bits=010", NULL), H);
    ASSERT_EQ(check(&c,
                    PMD "; server_no_context_takeover; server_no_context_takeover; "
                        "server_max_window_bits=10",
                    NULL),
              H);
    ASSERT_EQ(check(&c, PMD "; server_no_context_takeover; server_max_window_bits=10; x", NULL), H);
    ASSERT_EQ(check(&c, PMD "; server_no_context_takeover=yes; server_max_window_bits=10", NULL),
              H);
    /* RFC 6455 §4.1 item 5 and §9.1: an extension we did not offer, or one twice. */
    ASSERT_EQ(check(&c, "x-foo", NULL), H);
    ASSERT_EQ(check(&c,
                    PMD "; server_no_context_takeover; server_max_window_bits=10, " PMD
                        "; server_no_context_takeover; server_max_window_bits=10",
                    NULL),
              H);
    ASSERT_EQ(check(&c, PMD ";;", NULL), H);
    /* No answer: no extension, fine. */
    ASSERT_EQ(check(&c, "", NULL), KITE_OK);

    /* client_max_window_bits when we did not offer it (§7.1.2.2). */
    kite_pmd_config_preset(&c, KITE_PMD_SPEED);
    c.offer_client_max_window_bits = false;
    ASSERT_EQ(check(&c, PMD, NULL), KITE_OK);
    ASSERT_EQ(check(&c, PMD "; client_max_window_bits=15", NULL), H);
    /* A server may name its window though we did not ask (§7.1.2.1). */
    ASSERT_EQ(check(&c, PMD "; server_max_window_bits=11", &pp), KITE_OK);
    ASSERT_EQ(pp.server_max_window_bits, 11);

    /* With a fallback offer, an answer to the plain offer is fine. */
    kite_pmd_config_preset(&c, KITE_PMD_MEMORY);
    ASSERT_EQ(check(&c, PMD "; client_no_context_takeover", &pp), KITE_OK);
    ASSERT(!pp.server_no_context_takeover);
    ASSERT(pp.client_no_context_takeover);
}

/* Raw sessions negotiate only when the registry says so (Ktor's negotiateExtensions). */
TEST(raw_sessions_negotiate_only_when_asked)
{
    struct kite_ext_list *l = kite_ext_list_new(NULL);
    ASSERT_EQ(kite_ext_list_install(l, &kite_ext_permessage_deflate, NULL), KITE_OK);
    struct kite_ext_chain *ch;
    char buf[256];
    ASSERT(!kite_ext_list_raw_negotiation(l));
    ASSERT_EQ(kite_ext_offer(l, KITE_MODE_RAW, buf, sizeof(buf)), 0);
    ASSERT_STREQ(buf, "");
    ASSERT_EQ(kite_ext_negotiate(l, KITE_MODE_RAW, PMD, strlen(PMD), NULL, &ch), KITE_OK);
    ASSERT(ch == NULL);
    ASSERT_EQ(kite_ext_accept(l, KITE_MODE_RAW, PMD, strlen(PMD), NULL, &ch), KITE_ERR_HANDSHAKE);
    kite_ext_list_set_raw_negotiation(l, true);
    ASSERT(kite_ext_offer(l, KITE_MODE_RAW, buf, sizeof(buf)) > 0);
    ASSERT_EQ(kite_ext_negotiate(l, KITE_MODE_RAW, PMD, strlen(PMD), NULL, &ch), KITE_OK);
    ASSERT(ch != NULL);
    kite_ext_chain_free(ch);
    ASSERT_EQ(kite_ext_accept(l, KITE_MODE_RAW, PMD, strlen(PMD), NULL, &ch), KITE_OK);
    ASSERT(ch != NULL);
    kite_ext_chain_free(ch);
    kite_ext_list_free(l);
}

/* Window-bits values (§7.1.2): decimal 8-15, no leading zeroes. */
TEST(window_bits_values)
{
    static const char *good[] = {"8", "9", "10", "11", "12", "13", "14", "15"};
    for (size_t i = 0; i < KITE_ARRAY_LEN(good); i++)
        ASSERT_EQ(kite__pmd_window_bits(good[i], strlen(good[i])), (int)i + 8);
    static const char *bad[] = {"", "7", "16", "08", "010", "1", "abc", "9 ", "+9", "150"};
    for (size_t i = 0; i < KITE_ARRAY_LEN(bad); i++)
        ASSERT_EQ(kite__pmd_window_bits(bad[i], strlen(bad[i])), -1);
}

/* The config is checked at install; presets by name. */
TEST(config_checks_and_presets)
{
    struct kite_ext_list *l = kite_ext_list_new(NULL);
    struct kite_pmd_config c;
    kite_pmd_config_init(&c);
    c.level = 10;
    ASSERT_EQ(kite_ext_list_install(l, &kite_ext_permessage_deflate, &c), KITE_ERR_INVALID);
    kite_pmd_config_init(&c);
    c.mem_level = 0;
    ASSERT_EQ(kite_ext_list_install(l, &kite_ext_permessage_deflate, &c), KITE_ERR_INVALID);
    kite_pmd_config_init(&c);
    c.server_max_window_bits = 7;
    ASSERT_EQ(kite_ext_list_install(l, &kite_ext_permessage_deflate, &c), KITE_ERR_INVALID);
    kite_pmd_config_init(&c);
    c.client_max_window_bits = 16;
    ASSERT_EQ(kite_ext_list_install(l, &kite_ext_permessage_deflate, &c), KITE_ERR_INVALID);
    ASSERT_EQ(kite_ext_list_count(l), 0);
    ASSERT_EQ(kite_ext_list_install(l, &kite_ext_permessage_deflate, NULL), KITE_OK);
    const struct kite_pmd_config *got = kite_ext_list_config(l, &kite_ext_permessage_deflate);
    kite_pmd_config_init(&c);
    ASSERT(got && memcmp(got, &c, sizeof(c)) == 0);
    kite_ext_list_free(l);

    enum kite_pmd_preset p;
    ASSERT_EQ(kite_pmd_preset_by_name("MAX-ratio", &p), KITE_OK);
    ASSERT_EQ(p, KITE_PMD_MAX_RATIO);
    ASSERT_EQ(kite_pmd_preset_by_name("memory", &p), KITE_OK);
    ASSERT_EQ(p, KITE_PMD_MEMORY);
    ASSERT_EQ(kite_pmd_preset_by_name("fast", &p), KITE_ERR_NOTFOUND);
    ASSERT_EQ(kite_pmd_config_preset(&c, (enum kite_pmd_preset)9), KITE_ERR_INVALID);
    ASSERT_EQ(kite_pmd_params(NULL, NULL), KITE_ERR_INVALID);
}
