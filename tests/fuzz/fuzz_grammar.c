/* fuzz_grammar — libFuzzer target for grammar compilation and masking.
 *
 * Input: byte 0 picks the kind (json_schema, json_object, regex, choice, gbnf), byte 1
 * the JSON whitespace mode and max_depth, byte 2 seeds the walk; the rest is the grammar
 * text. A grammar that compiles (against a toy vocabulary: every single byte, a few dozen
 * multi-byte tokens that cross JSON / GBNF boundaries, partial UTF-8, two end tokens)
 * is walked for up to 24 tokens. Checks, besides memory safety and the compile bounds:
 * every token the mask allows is accepted, a token it refuses is refused (and leaves the
 * state as it was), the end tokens are allowed exactly when the state can end. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar.h"

static const char *const MULTI[] = {"{\"", "\":", "\",\"", "\"}", "\"]", "[{", "}]", "},{", "true", "false", "null",
                                    "12", "0.", "e+", "abc", "\":\"", "\\n", "\\u00", "\\\"", "\xc3\xa9", "\xe4\xb8\xad",
                                    "\xf0\x9f\x99\x82", "\xe4", "\xb8\xad", "  ", "\n  ", "ab\"", "\"a", "((", "))",
                                    "::=", " | ", "[a-z]", "*", "+?", "-0", "1,", "],", ",\"", "\"a\":"};
#define N_MULTI ((int)(sizeof MULTI / sizeof MULTI[0]))
#define N_TOK (256 + N_MULTI + 2)

static grammar_vocab *vocab;
static const char *piece[N_TOK];
static size_t plen[N_TOK];
static uint8_t eog[N_TOK];
static uint32_t *mask;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static char bytes[256];
    for (int i = 0; i < 256; i++) {
        bytes[i] = (char)i;
        piece[i] = &bytes[i];
        plen[i] = 1;
    }
    for (int i = 0; i < N_MULTI; i++) {
        piece[256 + i] = MULTI[i];
        plen[256 + i] = strlen(MULTI[i]);
    }
    eog[256 + N_MULTI] = eog[256 + N_MULTI + 1] = 1;
    err e = {0};
    if (grammar_vocab_from_pieces(&vocab, N_TOK, piece, plen, eog, &e)) {
        fprintf(stderr, "fuzz_grammar: %s\n", e.msg);
        exit(2);
    }
    mask = malloc(grammar_mask_words(vocab) * 4);
    return 0;
}

static int allowed(int id) { return (mask[id >> 5] >> (id & 31)) & 1; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3 || size > 65536) return 0;
    grammar_kind kind = (grammar_kind)(data[0] % 5);
    grammar_opts o;
    grammar_opts_default(&o);
    static const int ws[4] = {GRAMMAR_WS_COMPACT, GRAMMAR_WS_ANY, 1, 3};
    o.json_ws = ws[data[1] & 3];
    o.max_depth = 2 + ((data[1] >> 2) & 31);
    o.max_repeat = 64;
    o.max_work = 3000000; /* keep one execution short; the bound itself is under test */
    uint32_t seed = data[2] * 2654435761u + 1;
    grammar *g = NULL;
    err e = {0};
    if (grammar_compile(&g, vocab, kind, (const char *)data + 3, size - 3, &o, &e)) {
        if (!e.msg[0]) __builtin_trap(); /* an error always says why */
        return 0;
    }
    grammar_state *st = NULL;
    if (grammar_state_new(&st, g, &e)) __builtin_trap();
    for (int step = 0; step < 24; step++) {
        if (grammar_state_mask(st, mask, &e)) break; /* too ambiguous: a clean refusal */
        int can_end = grammar_state_can_end(st);
        if (allowed(256 + N_MULTI) != can_end || allowed(256 + N_MULTI + 1) != can_end) __builtin_trap();
        int n = 0, pick = -1, refuse = -1;
        for (int id = 0; id < N_TOK; id++) {
            if (allowed(id)) {
                n++;
                seed = seed * 1103515245u + 12345u;
                if ((seed >> 16) % (unsigned)n == 0) pick = id;
            } else if (refuse < 0 || ((seed >> 8) & 7) == 0) {
                refuse = id;
            }
        }
        if (refuse >= 0 && grammar_state_accept(st, refuse, &e) == 0) __builtin_trap();
        if (pick < 0) break;
        if (grammar_state_accept(st, pick, &e)) {
            /* only a state that ran out of stacks may refuse what its mask allowed */
            if (grammar_state_mask(st, mask, &e) == 0) __builtin_trap();
            break;
        }
        if (eog[pick]) {
            if (!grammar_state_done(st)) __builtin_trap();
            break;
        }
    }
    grammar_state_free(st);
    grammar_free(g);
    return 0;
}
