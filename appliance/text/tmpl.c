/* tmpl.c — a sandboxed Jinja subset for chat templates (see tmpl.h).
 *
 * What it matches: Python jinja2's ImmutableSandboxedEnvironment as
 * transformers configures it (trim_blocks, lstrip_blocks, loopcontrols, the
 * globals raise_exception / strftime_now / namespace / dict, and tojson =
 * json.dumps(ensure_ascii=False, ...)). Values follow Python: str() of a list
 * is its repr, 1.0 prints "1.0", dicts keep insertion order.
 *
 * Shape: source -> tokens (lexer applies the whitespace rules) -> a tree of
 * nodes (compile arena, owned by tmpl) -> render walks the tree with values
 * in a per-render arena that has a byte cap.
 *
 * Sandbox: names and attributes are looked up only in the render context,
 * the template's own variables and a fixed table of builtins; any attribute
 * starting with '_' is Undefined; mutating methods do not exist. Bounds: steps
 * (loop iterations, calls), macro depth, output bytes, arena bytes, nesting
 * of the source. Each bound, when hit, is an error. */
#include "tmpl.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonv.h"
#include "unicode.h"

enum {
    TMPL_MAX_NEST = 128,        /* source nesting (blocks, brackets, operators) */
    TMPL_MAX_RANGE = 100000,    /* jinja2's sandbox refuses larger ranges too */
    TMPL_CTX_DEPTH = 128,       /* JSON nesting of the context */
};

/* ================================================================= lexer */

typedef enum tk_type {
    TK_EOF = 0,
    TK_DATA,        /* text between tags, already whitespace-processed */
    TK_VAR_BEGIN,   /* {{ */
    TK_VAR_END,     /* }} */
    TK_BLOCK_BEGIN, /* {% */
    TK_BLOCK_END,   /* %} */
    TK_NAME,
    TK_STRING, /* decoded text */
    TK_INT,
    TK_FLOAT,
    TK_OP, /* 1-2 chars in op[] */
} tk_type;

typedef struct tk {
    tk_type type;
    int line;
    char op[3];
    const jv_str *s; /* DATA, NAME, STRING */
    int64_t i;
    double f;
} tk;

typedef struct lexer {
    jv_arena *a;
    const char *src;
    size_t n, pos;
    int line;
    tk *toks;
    size_t ntok, captok;
    err *e;
    int failed;
} lexer;

static int lx_fail(lexer *lx, const char *msg) {
    if (!lx->failed) err_set(lx->e, ERR_INVALID, "template syntax error, line %d: %s", lx->line, msg);
    lx->failed = 1;
    return -1;
}

static tk *lx_push(lexer *lx, tk_type type) {
    if (lx->ntok == lx->captok) {
        size_t nc = lx->captok ? lx->captok * 2 : 256;
        tk *nt = jv_alloc(lx->a, nc * sizeof *nt);
        if (!nt) {
            lx_fail(lx, "template too large");
            return NULL;
        }
        if (lx->ntok) memcpy(nt, lx->toks, lx->ntok * sizeof *nt);
        lx->toks = nt;
        lx->captok = nc;
    }
    tk *t = &lx->toks[lx->ntok++];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->line = lx->line;
    return t;
}

static int count_nl(const char *p, size_t n) {
    int c = 0;
    for (size_t i = 0; i < n; i++) c += p[i] == '\n';
    return c;
}

/* Python's str.isspace over UTF-8 at p[0..n): length of the whitespace char at p, or 0. */
static int ws_len(const char *p, size_t n) {
    uint32_t cp;
    int l = jv_utf8_next(p, n, &cp);
    return jv_py_isspace(cp) ? l : 0;
}

/* length of text with trailing whitespace removed (Python's rstrip()) */
static size_t rstrip_len(const char *p, size_t n) {
    size_t end = n;
    while (end > 0) {
        size_t s = end - 1;
        while (s > 0 && ((uint8_t)p[s] & 0xC0) == 0x80) s--;
        if (!ws_len(p + s, end - s)) break;
        end = s;
    }
    return end;
}

static size_t skip_ws(const char *p, size_t n, size_t i) {
    int l;
    while (i < n && (l = ws_len(p + i, n - i)) > 0) i += (size_t)l;
    return i;
}

/* Emits text before a tag, applying '-' (strip all trailing whitespace) or,
 * for blocks and comments, lstrip_blocks (strip the spaces that alone precede
 * the tag on its line). */
static int lx_text(lexer *lx, const char *p, size_t n, char sign, int is_var, int line_starting) {
    if (sign == '-') {
        n = rstrip_len(p, n);
    } else if (sign != '+' && !is_var) {
        size_t l_pos = 0;
        for (size_t i = n; i > 0; i--)
            if (p[i - 1] == '\n') { l_pos = i; break; }
        if (l_pos > 0 || line_starting) {
            if (l_pos < n && skip_ws(p, n, l_pos) == n) n = l_pos;
        }
    }
    if (n == 0) return 0;
    tk *t = lx_push(lx, TK_DATA);
    if (!t) return -1;
    t->s = jv_str_new(lx->a, p, n);
    if (!t->s) return lx_fail(lx, "template too large");
    return 0;
}

/* Python's unicode-escape decoding of a string literal body. */
static int lx_unescape(lexer *lx, const char *p, size_t n, const jv_str **out) {
    jv_buf b;
    jv_buf_init(&b, (size_t)-1);
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c != '\\' || i + 1 >= n) { jv_buf_putc(&b, c); continue; }
        char x = p[++i];
        uint32_t cp = 0;
        int digits = 0, base = 16;
        switch (x) {
        case '\n': break;
        case '\\': jv_buf_putc(&b, '\\'); break;
        case '\'': jv_buf_putc(&b, '\''); break;
        case '"': jv_buf_putc(&b, '"'); break;
        case 'a': jv_buf_putc(&b, '\a'); break;
        case 'b': jv_buf_putc(&b, '\b'); break;
        case 'f': jv_buf_putc(&b, '\f'); break;
        case 'n': jv_buf_putc(&b, '\n'); break;
        case 'r': jv_buf_putc(&b, '\r'); break;
        case 't': jv_buf_putc(&b, '\t'); break;
        case 'v': jv_buf_putc(&b, '\v'); break;
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default:
            if (x >= '0' && x <= '7') {
                base = 8;
                digits = -1;
            } else {
                jv_buf_putc(&b, '\\');
                jv_buf_putc(&b, x);
            }
        }
        if (digits > 0) {
            if (n - (i + 1) < (size_t)digits) { jv_buf_free(&b); return lx_fail(lx, "truncated escape in string"); }
            for (int k = 0; k < digits; k++) {
                char h = p[i + 1 + (size_t)k];
                int v = (h >= '0' && h <= '9') ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
                if (v < 0) { jv_buf_free(&b); return lx_fail(lx, "bad escape in string"); }
                cp = cp * 16 + (uint32_t)v;
            }
            i += (size_t)digits;
        } else if (digits < 0) {
            int k = 0;
            while (k < 3 && i < n && p[i] >= '0' && p[i] <= '7') { cp = cp * (uint32_t)base + (uint32_t)(p[i] - '0'); i++; k++; }
            i--;
            digits = 1;
        }
        if (digits) {
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) { jv_buf_free(&b); return lx_fail(lx, "bad code point in string"); }
            uint8_t u[4];
            jv_buf_put(&b, (const char *)u, (size_t)uni_encode(cp, u));
        }
    }
    *out = jv_str_new(lx->a, b.p ? b.p : "", b.n);
    jv_buf_free(&b);
    if (!*out) return lx_fail(lx, "template too large");
    return 0;
}

static int is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Tokens inside {{ }} or {% %} up to the end tag. */
static int lx_tag(lexer *lx, int is_block, int *line_starting) {
    const char *s = lx->src;
    size_t n = lx->n;
    int depth = 0;
    char stack[TMPL_MAX_NEST];
    while (1) {
        size_t i = lx->pos;
        /* whitespace */
        size_t j = i;
        while (j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r' || s[j] == '\f' || s[j] == '\v')) j++;
        if (j > i) {
            lx->line += count_nl(s + i, j - i);
            lx->pos = i = j;
        }
        if (i >= n) return lx_fail(lx, is_block ? "unexpected end of template, expected '%}'" : "unexpected end of template, expected '}}'");
        if (depth == 0) {
            const char *end = is_block ? "%}" : "}}";
            size_t el = 0;
            char sign = 0;
            if (n - i >= 3 && (s[i] == '-' || (is_block && s[i] == '+')) && memcmp(s + i + 1, end, 2) == 0) {
                sign = s[i];
                el = 3;
            } else if (n - i >= 2 && memcmp(s + i, end, 2) == 0) {
                el = 2;
            }
            if (el) {
                size_t after = i + el;
                if (sign == '-') after = skip_ws(s, n, after);
                else if (!sign && is_block && after < n && s[after] == '\n') after++;
                lx->line += count_nl(s + i, after - i);
                *line_starting = after > i && s[after - 1] == '\n';
                lx->pos = after;
                return lx_push(lx, is_block ? TK_BLOCK_END : TK_VAR_END) ? 0 : -1;
            }
        }
        char c = s[i];
        if (c == '\'' || c == '"') {
            size_t k = i + 1;
            while (k < n && s[k] != c) {
                if (s[k] == '\\' && k + 1 < n) k++;
                k++;
            }
            if (k >= n) return lx_fail(lx, "unterminated string");
            tk *t = lx_push(lx, TK_STRING);
            if (!t) return -1;
            /* Jinja normalizes newlines inside literals; the source already is */
            if (lx_unescape(lx, s + i + 1, k - i - 1, &t->s)) return -1;
            lx->line += count_nl(s + i, k + 1 - i);
            lx->pos = k + 1;
            continue;
        }
        if (is_digit(c)) {
            size_t k = i;
            char num[64];
            size_t nn = 0;
            int is_float = 0;
            while (k < n && (is_digit(s[k]) || (s[k] == '_' && k + 1 < n && is_digit(s[k + 1])))) {
                if (s[k] != '_' && nn < 60) num[nn++] = s[k];
                k++;
            }
            if (k + 1 < n && s[k] == '.' && is_digit(s[k + 1])) {
                is_float = 1;
                num[nn++] = s[k++];
                while (k < n && (is_digit(s[k]) || (s[k] == '_' && k + 1 < n && is_digit(s[k + 1])))) {
                    if (s[k] != '_' && nn < 60) num[nn++] = s[k];
                    k++;
                }
            }
            if (k < n && (s[k] == 'e' || s[k] == 'E')) {
                size_t q = k + 1;
                if (q < n && (s[q] == '+' || s[q] == '-')) q++;
                if (q < n && is_digit(s[q])) {
                    is_float = 1;
                    while (k < q && nn < 60) num[nn++] = s[k++];
                    while (k < n && is_digit(s[k])) {
                        if (nn < 60) num[nn++] = s[k];
                        k++;
                    }
                }
            }
            if (nn >= 60) return lx_fail(lx, "number too long");
            num[nn] = '\0';
            tk *t = lx_push(lx, is_float ? TK_FLOAT : TK_INT);
            if (!t) return -1;
            if (is_float) t->f = strtod(num, NULL);
            else {
                char *e;
                unsigned long long v = strtoull(num, &e, 10);
                if (nn > 18 && (nn > 19 || v > (unsigned long long)INT64_MAX)) return lx_fail(lx, "integer literal too large");
                t->i = (int64_t)v;
            }
            lx->pos = k;
            continue;
        }
        if (is_name_start(c)) {
            size_t k = i;
            while (k < n && is_name_char(s[k])) k++;
            tk *t = lx_push(lx, TK_NAME);
            if (!t) return -1;
            t->s = jv_str_new(lx->a, s + i, k - i);
            if (!t->s) return lx_fail(lx, "template too large");
            lx->pos = k;
            continue;
        }
        static const char *two[] = {"//", "**", "==", "!=", ">=", "<="};
        size_t ol = 0;
        for (size_t k = 0; k < sizeof two / sizeof *two; k++)
            if (n - i >= 2 && s[i] == two[k][0] && s[i + 1] == two[k][1]) ol = 2;
        if (!ol && strchr("+-/*%~<>=.,:|()[]{};", c) && c) ol = 1;
        if (!ol) return lx_fail(lx, "unexpected character");
        if (c == '(' || c == '[' || c == '{') {
            if (depth >= TMPL_MAX_NEST) return lx_fail(lx, "brackets nested too deep");
            stack[depth++] = c == '(' ? ')' : c == '[' ? ']' : '}';
        } else if (c == ')' || c == ']' || c == '}') {
            if (depth == 0 || stack[depth - 1] != c) return lx_fail(lx, "unbalanced bracket");
            depth--;
        }
        tk *t = lx_push(lx, TK_OP);
        if (!t) return -1;
        memcpy(t->op, s + i, ol);
        lx->pos = i + ol;
    }
}

static int lx_run(lexer *lx) {
    const char *s = lx->src;
    size_t n = lx->n;
    int line_starting = 1;
    while (lx->pos < n) {
        size_t start = lx->pos, at = n;
        for (size_t i = start; i + 1 < n; i++)
            if (s[i] == '{' && (s[i + 1] == '{' || s[i + 1] == '%' || s[i + 1] == '#')) { at = i; break; }
        if (at == n) {
            if (lx_text(lx, s + start, n - start, 0, 1, 0)) return -1;
            lx->line += count_nl(s + start, n - start);
            break;
        }
        char kind = s[at + 1];
        char sign = (at + 2 < n && (s[at + 2] == '-' || s[at + 2] == '+')) ? s[at + 2] : 0;
        /* {% raw %} ... {% endraw %} */
        if (kind == '%') {
            size_t k = skip_ws(s, n, at + 2 + (sign ? 1 : 0));
            if (n - k >= 3 && memcmp(s + k, "raw", 3) == 0) {
                size_t q = skip_ws(s, n, k + 3);
                size_t after = 0;
                if (n - q >= 3 && s[q] == '-' && memcmp(s + q + 1, "%}", 2) == 0) after = skip_ws(s, n, q + 3);
                else if (n - q >= 2 && memcmp(s + q, "%}", 2) == 0) after = q + 2;
                if (after) {
                    if (lx_text(lx, s + start, at - start, sign, 0, line_starting)) return -1;
                    lx->line += count_nl(s + start, after - start);
                    /* find {%(-|+|)\s*endraw\s*(+%}|-%}\s*|%}\n?) */
                    size_t r = after;
                    while (1) {
                        const char *f = NULL;
                        for (size_t i = r; i + 1 < n; i++)
                            if (s[i] == '{' && s[i + 1] == '%') { f = s + i; break; }
                        if (!f) return lx_fail(lx, "missing end of raw directive");
                        size_t fi = (size_t)(f - s);
                        char es = (fi + 2 < n && (s[fi + 2] == '-' || s[fi + 2] == '+')) ? s[fi + 2] : 0;
                        size_t w = skip_ws(s, n, fi + 2 + (es ? 1 : 0));
                        if (n - w >= 6 && memcmp(s + w, "endraw", 6) == 0) {
                            size_t z = skip_ws(s, n, w + 6), end = 0;
                            if (n - z >= 3 && s[z] == '+' && memcmp(s + z + 1, "%}", 2) == 0) end = z + 3;
                            else if (n - z >= 3 && s[z] == '-' && memcmp(s + z + 1, "%}", 2) == 0) end = skip_ws(s, n, z + 3);
                            else if (n - z >= 2 && memcmp(s + z, "%}", 2) == 0) {
                                end = z + 2;
                                if (end < n && s[end] == '\n') end++;
                            }
                            if (end) {
                                if (lx_text(lx, s + after, fi - after, es, 0, 0)) return -1;
                                lx->line += count_nl(s + after, end - after);
                                line_starting = s[end - 1] == '\n';
                                lx->pos = end;
                                break;
                            }
                        }
                        r = fi + 2;
                    }
                    continue;
                }
            }
        }
        if (lx_text(lx, s + start, at - start, sign, kind == '{', line_starting)) return -1;
        lx->line += count_nl(s + start, at - start);
        lx->pos = at + 2 + (sign ? 1 : 0);
        if (kind == '#') {
            size_t i = lx->pos, end = 0, close = 0;
            for (; i + 1 < n; i++)
                if (s[i] == '#' && s[i + 1] == '}') break;
            if (i + 1 >= n) return lx_fail(lx, "missing end of comment tag");
            close = i + 2;
            if (i > lx->pos && s[i - 1] == '-') end = skip_ws(s, n, close);
            else if (i > lx->pos && s[i - 1] == '+') end = close;
            else end = (close < n && s[close] == '\n') ? close + 1 : close;
            lx->line += count_nl(s + lx->pos, end - lx->pos);
            line_starting = s[end - 1] == '\n';
            lx->pos = end;
            continue;
        }
        if (!lx_push(lx, kind == '{' ? TK_VAR_BEGIN : TK_BLOCK_BEGIN)) return -1;
        if (lx_tag(lx, kind == '%', &line_starting)) return -1;
    }
    return lx_push(lx, TK_EOF) ? 0 : -1;
}

/* ================================================================= tree */

typedef enum nk {
    /* statements */
    N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_MACRO, N_BREAK, N_CONTINUE, N_BLOCKLIST,
    /* expressions */
    E_CONST, E_NAME, E_ATTR, E_ITEM, E_SLICE, E_CALL, E_FILTER, E_TEST, E_NEG, E_POS, E_NOT,
    E_AND, E_OR, E_BIN, E_CMP, E_COND, E_LIST, E_TUPLE, E_DICT,
} nk;

typedef struct node node;
struct node {
    nk kind;
    int line;
    char op[3];         /* E_BIN operator; E_CMP: ops in kids' op */
    int negate;         /* E_TEST: "is not" */
    const jv_str *name; /* E_NAME, E_ATTR, E_FILTER/E_TEST name, N_SET target, N_MACRO name */
    const jv_str *attr; /* N_SET: ns.attr target */
    jv cval;            /* E_CONST */
    node *a, *b, *c;    /* operands; N_IF: a = cond, b = then, c = else; N_FOR: a = iter, b = body, c = else */
    node *cond;         /* N_FOR: the "if" filter */
    node **kids;        /* list items, call args, block statements, dict keys, cmp operands */
    int nkids;
    node **vals;        /* dict values; call kwarg values; macro defaults */
    const jv_str **names; /* call kwarg names; macro params; for/set tuple targets */
    int nnames;
};

typedef struct parser {
    jv_arena *a;
    tk *t;
    size_t i, n;
    int depth;
    err *e;
    int failed;
} parser;

struct tmpl {
    jv_arena *arena;
    node *root;
};

static tk *cur(parser *p) { return &p->t[p->i]; }
static int is_op(const tk *t, const char *op) { return t->type == TK_OP && strcmp(t->op, op) == 0; }
static int is_name(const tk *t, const char *nm) {
    return t->type == TK_NAME && t->s->len == strlen(nm) && memcmp(t->s->p, nm, t->s->len) == 0;
}

static node *p_fail(parser *p, const char *msg) {
    if (!p->failed) err_set(p->e, ERR_INVALID, "template syntax error, line %d: %s", cur(p)->line, msg);
    p->failed = 1;
    return NULL;
}

static node *mk(parser *p, nk kind) {
    node *n = jv_alloc(p->a, sizeof *n);
    if (!n) return p_fail(p, "template too large");
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->line = cur(p)->line;
    return n;
}

/* growable node-pointer arrays in the arena */
typedef struct nvec {
    node **v;
    int n, cap;
} nvec;

static int nv_push(parser *p, nvec *v, node *x) {
    if (v->n == v->cap) {
        int nc = v->cap ? v->cap * 2 : 4;
        node **nn = jv_alloc(p->a, (size_t)nc * sizeof *nn);
        if (!nn) { p_fail(p, "template too large"); return -1; }
        if (v->n) memcpy(nn, v->v, (size_t)v->n * sizeof *nn);
        v->v = nn;
        v->cap = nc;
    }
    v->v[v->n++] = x;
    return 0;
}

typedef struct svec {
    const jv_str **v;
    int n, cap;
} svec;

static int sv_push(parser *p, svec *v, const jv_str *x) {
    if (v->n == v->cap) {
        int nc = v->cap ? v->cap * 2 : 4;
        const jv_str **nn = jv_alloc(p->a, (size_t)nc * sizeof *nn);
        if (!nn) { p_fail(p, "template too large"); return -1; }
        if (v->n) memcpy(nn, v->v, (size_t)v->n * sizeof *nn);
        v->v = nn;
        v->cap = nc;
    }
    v->v[v->n++] = x;
    return 0;
}

static int expect_op(parser *p, const char *op) {
    if (!is_op(cur(p), op)) {
        char msg[64];
        snprintf(msg, sizeof msg, "expected '%s'", op);
        p_fail(p, msg);
        return -1;
    }
    p->i++;
    return 0;
}

static node *p_expr(parser *p);
static node *p_unary(parser *p, int with_filter);
static node *p_or(parser *p);

static node *p_enter(parser *p) {
    if (++p->depth > TMPL_MAX_NEST) return p_fail(p, "expression nested too deep");
    return (node *)1;
}

/* call arguments after '(' : positional, then name=value */
static int p_args(parser *p, node *call) {
    nvec pos = {0}, kwv = {0};
    svec kwn = {0};
    while (!is_op(cur(p), ")")) {
        if (pos.n + kwv.n > 0 && expect_op(p, ",")) return -1;
        if (is_op(cur(p), ")")) break;
        if (cur(p)->type == TK_NAME && is_op(&p->t[p->i + 1], "=")) {
            const jv_str *nm = cur(p)->s;
            p->i += 2;
            node *v = p_expr(p);
            if (!v || sv_push(p, &kwn, nm) || nv_push(p, &kwv, v)) return -1;
        } else {
            if (kwv.n) { p_fail(p, "positional argument after keyword argument"); return -1; }
            node *v = p_expr(p);
            if (!v || nv_push(p, &pos, v)) return -1;
        }
    }
    p->i++;
    call->kids = pos.v;
    call->nkids = pos.n;
    call->vals = kwv.v;
    call->names = kwn.v;
    call->nnames = kwn.n;
    return 0;
}

static node *p_primary(parser *p) {
    tk *t = cur(p);
    node *n;
    if (t->type == TK_NAME) {
        const char *w = t->s->p;
        if (!strcmp(w, "true") || !strcmp(w, "True") || !strcmp(w, "false") || !strcmp(w, "False")) {
            if (!(n = mk(p, E_CONST))) return NULL;
            n->cval = jv_bool(w[0] == 't' || w[0] == 'T');
        } else if (!strcmp(w, "none") || !strcmp(w, "None")) {
            if (!(n = mk(p, E_CONST))) return NULL;
            n->cval = jv_none();
        } else {
            if (!(n = mk(p, E_NAME))) return NULL;
            n->name = t->s;
        }
        p->i++;
        return n;
    }
    if (t->type == TK_STRING) {
        /* adjacent literals concatenate */
        jv_buf b;
        jv_buf_init(&b, (size_t)-1);
        while (cur(p)->type == TK_STRING) {
            jv_buf_put(&b, cur(p)->s->p, cur(p)->s->len);
            p->i++;
        }
        if (!(n = mk(p, E_CONST))) { jv_buf_free(&b); return NULL; }
        const jv_str *s = jv_str_new(p->a, b.p ? b.p : "", b.n);
        jv_buf_free(&b);
        if (!s) return p_fail(p, "template too large");
        n->cval = jv_strv(s);
        return n;
    }
    if (t->type == TK_INT || t->type == TK_FLOAT) {
        if (!(n = mk(p, E_CONST))) return NULL;
        n->cval = t->type == TK_INT ? jv_int(t->i) : jv_float(t->f);
        p->i++;
        return n;
    }
    if (is_op(t, "(")) {
        p->i++;
        if (is_op(cur(p), ")")) {
            p->i++;
            return mk(p, E_TUPLE);
        }
        node *first = p_expr(p);
        if (!first) return NULL;
        if (is_op(cur(p), ")")) {
            p->i++;
            return first;
        }
        nvec items = {0};
        if (nv_push(p, &items, first)) return NULL;
        while (is_op(cur(p), ",")) {
            p->i++;
            if (is_op(cur(p), ")")) break;
            node *x = p_expr(p);
            if (!x || nv_push(p, &items, x)) return NULL;
        }
        if (expect_op(p, ")")) return NULL;
        if (!(n = mk(p, E_TUPLE))) return NULL;
        n->kids = items.v;
        n->nkids = items.n;
        return n;
    }
    if (is_op(t, "[")) {
        p->i++;
        nvec items = {0};
        while (!is_op(cur(p), "]")) {
            if (items.n && expect_op(p, ",")) return NULL;
            if (is_op(cur(p), "]")) break;
            node *x = p_expr(p);
            if (!x || nv_push(p, &items, x)) return NULL;
        }
        p->i++;
        if (!(n = mk(p, E_LIST))) return NULL;
        n->kids = items.v;
        n->nkids = items.n;
        return n;
    }
    if (is_op(t, "{")) {
        p->i++;
        nvec keys = {0}, vals = {0};
        while (!is_op(cur(p), "}")) {
            if (keys.n && expect_op(p, ",")) return NULL;
            if (is_op(cur(p), "}")) break;
            node *k = p_expr(p);
            if (!k || expect_op(p, ":")) return NULL;
            node *v = p_expr(p);
            if (!v || nv_push(p, &keys, k) || nv_push(p, &vals, v)) return NULL;
        }
        p->i++;
        if (!(n = mk(p, E_DICT))) return NULL;
        n->kids = keys.v;
        n->vals = vals.v;
        n->nkids = keys.n;
        return n;
    }
    return p_fail(p, "unexpected token in expression");
}

static node *p_subscript_part(parser *p) {
    if (is_op(cur(p), ":") || is_op(cur(p), "]") || is_op(cur(p), ",")) return NULL;
    return p_expr(p);
}

static node *p_postfix(parser *p, node *n) {
    while (n) {
        tk *t = cur(p);
        if (is_op(t, ".")) {
            p->i++;
            tk *at = cur(p);
            node *x;
            if (at->type == TK_NAME) {
                if (!(x = mk(p, E_ATTR))) return NULL;
                x->a = n;
                x->name = at->s;
            } else if (at->type == TK_INT) {
                if (!(x = mk(p, E_ITEM))) return NULL;
                node *k = mk(p, E_CONST);
                if (!k) return NULL;
                k->cval = jv_int(at->i);
                x->a = n;
                x->b = k;
            } else {
                return p_fail(p, "expected a name after '.'");
            }
            p->i++;
            n = x;
        } else if (is_op(t, "[")) {
            p->i++;
            node *lo = p_subscript_part(p);
            if (p->failed) return NULL;
            if (is_op(cur(p), ":")) {
                node *x = mk(p, E_SLICE);
                if (!x) return NULL;
                p->i++;
                x->a = n;
                x->b = lo;
                node *hi = p_subscript_part(p);
                if (p->failed) return NULL;
                node *st = NULL;
                if (is_op(cur(p), ":")) {
                    p->i++;
                    st = p_subscript_part(p);
                    if (p->failed) return NULL;
                }
                x->c = hi;
                x->cond = st;
                if (expect_op(p, "]")) return NULL;
                n = x;
            } else {
                if (!lo) return p_fail(p, "expected a subscript");
                if (expect_op(p, "]")) return NULL;
                node *x = mk(p, E_ITEM);
                if (!x) return NULL;
                x->a = n;
                x->b = lo;
                n = x;
            }
        } else if (is_op(t, "(")) {
            p->i++;
            node *x = mk(p, E_CALL);
            if (!x) return NULL;
            x->a = n;
            if (p_args(p, x)) return NULL;
            n = x;
        } else {
            break;
        }
    }
    return n;
}

static node *p_filters(parser *p, node *n) {
    while (n) {
        if (is_op(cur(p), "|")) {
            p->i++;
            if (cur(p)->type != TK_NAME) return p_fail(p, "expected a filter name");
            node *f = mk(p, E_FILTER);
            if (!f) return NULL;
            f->name = cur(p)->s;
            p->i++;
            /* dotted filter names are not used by chat templates */
            if (is_op(cur(p), "(")) {
                p->i++;
                if (p_args(p, f)) return NULL;
            }
            f->a = n;
            n = f;
        } else if (is_name(cur(p), "is")) {
            p->i++;
            node *t = mk(p, E_TEST);
            if (!t) return NULL;
            if (is_name(cur(p), "not")) {
                t->negate = 1;
                p->i++;
            }
            if (cur(p)->type != TK_NAME) return p_fail(p, "expected a test name");
            t->name = cur(p)->s;
            p->i++;
            t->a = n;
            tk *c = cur(p);
            if (is_op(c, "(")) {
                p->i++;
                if (p_args(p, t)) return NULL;
            } else if ((c->type == TK_NAME || c->type == TK_STRING || c->type == TK_INT || c->type == TK_FLOAT ||
                        is_op(c, "[") || is_op(c, "{")) &&
                       !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
                /* one argument without parentheses: "is divisibleby 3", "is sameas false" */
                node *arg = p_postfix(p, p_primary(p));
                if (!arg) return NULL;
                t->kids = jv_alloc(p->a, sizeof(node *));
                if (!t->kids) return p_fail(p, "template too large");
                t->kids[0] = arg;
                t->nkids = 1;
            }
            n = t;
        } else {
            break;
        }
    }
    return n;
}

static node *p_unary(parser *p, int with_filter) {
    if (!p_enter(p)) return NULL;
    node *n;
    if (is_op(cur(p), "-") || is_op(cur(p), "+")) {
        int neg = is_op(cur(p), "-");
        p->i++;
        if (!(n = mk(p, neg ? E_NEG : E_POS))) return NULL;
        n->a = p_unary(p, 0);
        if (!n->a) return NULL;
    } else {
        n = p_primary(p);
    }
    n = p_postfix(p, n);
    if (with_filter) n = p_filters(p, n);
    p->depth--;
    return n;
}

static node *p_bin(parser *p, node *l, const char *op, node *r) {
    if (!l || !r) return NULL;
    node *n = mk(p, E_BIN);
    if (!n) return NULL;
    strcpy(n->op, op);
    n->a = l;
    n->b = r;
    return n;
}

static node *p_pow(parser *p) {
    node *l = p_unary(p, 1);
    while (l && is_op(cur(p), "**")) {
        p->i++;
        l = p_bin(p, l, "**", p_unary(p, 1));
    }
    return l;
}

static node *p_math2(parser *p) {
    node *l = p_pow(p);
    while (l && (is_op(cur(p), "*") || is_op(cur(p), "/") || is_op(cur(p), "//") || is_op(cur(p), "%"))) {
        char op[3];
        strcpy(op, cur(p)->op);
        p->i++;
        l = p_bin(p, l, op, p_pow(p));
    }
    return l;
}

static node *p_concat(parser *p) {
    node *l = p_math2(p);
    while (l && is_op(cur(p), "~")) {
        p->i++;
        l = p_bin(p, l, "~", p_math2(p));
    }
    return l;
}

static node *p_math1(parser *p) {
    node *l = p_concat(p);
    while (l && (is_op(cur(p), "+") || is_op(cur(p), "-"))) {
        char op[3];
        strcpy(op, cur(p)->op);
        p->i++;
        l = p_bin(p, l, op, p_concat(p));
    }
    return l;
}

static node *p_compare(parser *p) {
    node *l = p_math1(p);
    if (!l) return NULL;
    nvec ops = {0};
    while (1) {
        tk *t = cur(p);
        char op[3] = {0};
        if (is_op(t, "==") || is_op(t, "!=") || is_op(t, "<") || is_op(t, ">") || is_op(t, "<=") || is_op(t, ">=")) {
            strcpy(op, t->op);
            p->i++;
        } else if (is_name(t, "in")) {
            strcpy(op, "in");
            p->i++;
        } else if (is_name(t, "not") && is_name(&p->t[p->i + 1], "in")) {
            strcpy(op, "ni");
            p->i += 2;
        } else {
            break;
        }
        node *r = p_math1(p);
        if (!r) return NULL;
        node *pair = mk(p, E_CONST);
        if (!pair) return NULL;
        strcpy(pair->op, op);
        pair->a = r;
        if (nv_push(p, &ops, pair)) return NULL;
    }
    if (!ops.n) return l;
    node *n = mk(p, E_CMP);
    if (!n) return NULL;
    n->a = l;
    n->kids = ops.v;
    n->nkids = ops.n;
    return n;
}

static node *p_not(parser *p) {
    if (is_name(cur(p), "not")) {
        if (!p_enter(p)) return NULL;
        p->i++;
        node *n = mk(p, E_NOT);
        if (!n) return NULL;
        n->a = p_not(p);
        p->depth--;
        return n->a ? n : NULL;
    }
    return p_compare(p);
}

static node *p_and(parser *p) {
    node *l = p_not(p);
    while (l && is_name(cur(p), "and")) {
        p->i++;
        node *n = mk(p, E_AND);
        if (!n) return NULL;
        n->a = l;
        n->b = p_not(p);
        l = n->b ? n : NULL;
    }
    return l;
}

static node *p_or(parser *p) {
    node *l = p_and(p);
    while (l && is_name(cur(p), "or")) {
        p->i++;
        node *n = mk(p, E_OR);
        if (!n) return NULL;
        n->a = l;
        n->b = p_and(p);
        l = n->b ? n : NULL;
    }
    return l;
}

static node *p_expr(parser *p) {
    if (!p_enter(p)) return NULL;
    node *n = p_or(p);
    while (n && is_name(cur(p), "if")) {
        p->i++;
        node *c = mk(p, E_COND);
        if (!c) return NULL;
        c->b = n;
        c->a = p_or(p);
        if (!c->a) return NULL;
        if (is_name(cur(p), "else")) {
            p->i++;
            c->c = p_expr(p);
            if (!c->c) return NULL;
        }
        n = c;
    }
    p->depth--;
    return n;
}

/* an expression, or a bare tuple "a, b" (for {% set %} right sides) */
static node *p_tuple_expr(parser *p) {
    node *first = p_expr(p);
    if (!first || !is_op(cur(p), ",")) return first;
    nvec items = {0};
    if (nv_push(p, &items, first)) return NULL;
    while (is_op(cur(p), ",")) {
        p->i++;
        node *x = p_expr(p);
        if (!x || nv_push(p, &items, x)) return NULL;
    }
    node *n = mk(p, E_TUPLE);
    if (!n) return NULL;
    n->kids = items.v;
    n->nkids = items.n;
    return n;
}

static int expect_block_end(parser *p) {
    if (cur(p)->type != TK_BLOCK_END) {
        p_fail(p, "expected end of statement block");
        return -1;
    }
    p->i++;
    return 0;
}

/* Parses statements until a {% NAME %} whose name is in `ends` (left current). */
static node *p_body(parser *p, const char *const *ends);

static int at_end_tag(parser *p, const char *const *ends) {
    if (cur(p)->type != TK_BLOCK_BEGIN) return 0;
    tk *n = &p->t[p->i + 1];
    if (n->type != TK_NAME) return 0;
    for (int k = 0; ends && ends[k]; k++)
        if (is_name(n, ends[k])) return 1;
    return 0;
}

static int p_targets(parser *p, svec *names) {
    while (1) {
        if (cur(p)->type != TK_NAME) { p_fail(p, "expected a variable name"); return -1; }
        if (sv_push(p, names, cur(p)->s)) return -1;
        p->i++;
        if (!is_op(cur(p), ",")) return 0;
        p->i++;
    }
}

static node *p_stmt(parser *p) {
    /* at TK_BLOCK_BEGIN */
    p->i++;
    tk *t = cur(p);
    if (t->type != TK_NAME) return p_fail(p, "expected a statement name");
    node *n;
    if (is_name(t, "if")) {
        p->i++;
        if (!(n = mk(p, N_IF))) return NULL;
        node *top = n;
        n->a = p_tuple_expr(p);
        if (!n->a || expect_block_end(p)) return NULL;
        static const char *const ends[] = {"elif", "else", "endif", NULL};
        while (1) {
            n->b = p_body(p, ends);
            if (!n->b) return NULL;
            tk *w = &p->t[p->i + 1];
            p->i += 2;
            if (is_name(w, "elif")) {
                node *e = mk(p, N_IF);
                if (!e) return NULL;
                e->a = p_tuple_expr(p);
                if (!e->a || expect_block_end(p)) return NULL;
                n->c = e;
                n = e;
                continue;
            }
            if (is_name(w, "else")) {
                if (expect_block_end(p)) return NULL;
                static const char *const endif[] = {"endif", NULL};
                n->c = p_body(p, endif);
                if (!n->c) return NULL;
                p->i += 2;
            }
            if (expect_block_end(p)) return NULL;
            return top;
        }
    }
    if (is_name(t, "for")) {
        p->i++;
        if (!(n = mk(p, N_FOR))) return NULL;
        svec names = {0};
        if (p_targets(p, &names)) return NULL;
        n->names = names.v;
        n->nnames = names.n;
        if (!is_name(cur(p), "in")) return p_fail(p, "expected 'in'");
        p->i++;
        /* the iterable may not contain a bare conditional (the "if" filters) */
        n->a = p_or(p);
        if (!n->a) return NULL;
        if (is_name(cur(p), "if")) {
            p->i++;
            n->cond = p_expr(p);
            if (!n->cond) return NULL;
        }
        if (is_name(cur(p), "recursive")) return p_fail(p, "recursive loops are not supported");
        if (expect_block_end(p)) return NULL;
        static const char *const ends[] = {"else", "endfor", NULL};
        n->b = p_body(p, ends);
        if (!n->b) return NULL;
        tk *w = &p->t[p->i + 1];
        p->i += 2;
        if (is_name(w, "else")) {
            if (expect_block_end(p)) return NULL;
            static const char *const endfor[] = {"endfor", NULL};
            n->c = p_body(p, endfor);
            if (!n->c) return NULL;
            p->i += 2;
        }
        if (expect_block_end(p)) return NULL;
        return n;
    }
    if (is_name(t, "set")) {
        p->i++;
        if (cur(p)->type != TK_NAME) return p_fail(p, "expected a variable name");
        svec names = {0};
        const jv_str *attr = NULL;
        if (is_op(&p->t[p->i + 1], ".")) {
            if (sv_push(p, &names, cur(p)->s)) return NULL;
            p->i += 2;
            if (cur(p)->type != TK_NAME) return p_fail(p, "expected an attribute name");
            attr = cur(p)->s;
            p->i++;
        } else if (p_targets(p, &names)) {
            return NULL;
        }
        if (cur(p)->type == TK_BLOCK_END) {
            if (names.n != 1 || attr) return p_fail(p, "block set takes one name");
            p->i++;
            if (!(n = mk(p, N_SETBLOCK))) return NULL;
            n->name = names.v[0];
            static const char *const ends[] = {"endset", NULL};
            n->b = p_body(p, ends);
            if (!n->b) return NULL;
            p->i += 2;
            if (expect_block_end(p)) return NULL;
            return n;
        }
        if (expect_op(p, "=")) return NULL;
        if (!(n = mk(p, N_SET))) return NULL;
        n->names = names.v;
        n->nnames = names.n;
        n->attr = attr;
        n->a = p_tuple_expr(p);
        if (!n->a || expect_block_end(p)) return NULL;
        return n;
    }
    if (is_name(t, "macro")) {
        p->i++;
        if (cur(p)->type != TK_NAME) return p_fail(p, "expected a macro name");
        if (!(n = mk(p, N_MACRO))) return NULL;
        n->name = cur(p)->s;
        p->i++;
        if (expect_op(p, "(")) return NULL;
        svec params = {0};
        nvec defs = {0};
        while (!is_op(cur(p), ")")) {
            if (params.n && expect_op(p, ",")) return NULL;
            if (is_op(cur(p), ")")) break;
            if (cur(p)->type != TK_NAME) return p_fail(p, "expected a parameter name");
            if (sv_push(p, &params, cur(p)->s)) return NULL;
            p->i++;
            node *d = NULL;
            if (is_op(cur(p), "=")) {
                p->i++;
                d = p_expr(p);
                if (!d) return NULL;
            } else if (defs.n && defs.v[defs.n - 1]) {
                return p_fail(p, "non-default argument follows default argument");
            }
            if (nv_push(p, &defs, d)) return NULL;
        }
        p->i++;
        if (expect_block_end(p)) return NULL;
        n->names = params.v;
        n->nnames = params.n;
        n->vals = defs.v;
        static const char *const ends[] = {"endmacro", NULL};
        n->b = p_body(p, ends);
        if (!n->b) return NULL;
        p->i += 2;
        if (cur(p)->type == TK_NAME) p->i++; /* {% endmacro name %} */
        if (expect_block_end(p)) return NULL;
        return n;
    }
    if (is_name(t, "break") || is_name(t, "continue")) {
        if (!(n = mk(p, is_name(t, "break") ? N_BREAK : N_CONTINUE))) return NULL;
        p->i++;
        if (expect_block_end(p)) return NULL;
        return n;
    }
    if (is_name(t, "generation")) {
        /* transformers' assistant-mask extension: renders its body */
        p->i++;
        if (expect_block_end(p)) return NULL;
        static const char *const ends[] = {"endgeneration", NULL};
        n = p_body(p, ends);
        if (!n) return NULL;
        p->i += 2;
        if (expect_block_end(p)) return NULL;
        return n;
    }
    return p_fail(p, "unknown or unsupported statement");
}

static node *p_body(parser *p, const char *const *ends) {
    if (!p_enter(p)) return NULL;
    nvec items = {0};
    while (1) {
        tk *t = cur(p);
        if (t->type == TK_EOF) {
            if (ends) return p_fail(p, "unexpected end of template (unclosed block)");
            break;
        }
        if (at_end_tag(p, ends)) break;
        node *n;
        if (t->type == TK_DATA) {
            if (!(n = mk(p, N_TEXT))) return NULL;
            n->cval = jv_strv(t->s);
            p->i++;
        } else if (t->type == TK_VAR_BEGIN) {
            p->i++;
            if (!(n = mk(p, N_OUT))) return NULL;
            n->a = p_tuple_expr(p);
            if (!n->a) return NULL;
            if (cur(p)->type != TK_VAR_END) return p_fail(p, "expected '}}'");
            p->i++;
        } else if (t->type == TK_BLOCK_BEGIN) {
            tk *w = &p->t[p->i + 1];
            if (w->type == TK_NAME && (is_name(w, "endif") || is_name(w, "endfor") || is_name(w, "else") ||
                                       is_name(w, "elif") || is_name(w, "endmacro") || is_name(w, "endset")))
                return p_fail(p, "unexpected end tag");
            n = p_stmt(p);
            if (!n) return NULL;
        } else {
            return p_fail(p, "unexpected token");
        }
        if (nv_push(p, &items, n)) return NULL;
    }
    node *b = mk(p, N_BLOCKLIST);
    if (!b) return NULL;
    b->kids = items.v;
    b->nkids = items.n;
    p->depth--;
    return b;
}

int tmpl_compile(tmpl **out, const char *src, size_t len, err *e) {
    *out = NULL;
    tmpl *t = calloc(1, sizeof *t);
    if (!t) return err_set(e, ERR_NOMEM, "template: out of memory");
    /* the compiled form is a small multiple of the source */
    t->arena = jv_arena_new(64 * len + (1u << 20));
    if (!t->arena) {
        free(t);
        return err_set(e, ERR_NOMEM, "template: out of memory");
    }
    /* newlines normalized to \n; one trailing newline dropped (keep_trailing_newline=False) */
    char *s = jv_alloc(t->arena, len + 1);
    if (!s) {
        tmpl_free(t);
        return err_set(e, ERR_NOMEM, "template too large");
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n && s[n - 1] == '\n') n--;
    s[n] = '\0';
    lexer lx = {.a = t->arena, .src = s, .n = n, .line = 1, .e = e};
    if (lx_run(&lx)) {
        tmpl_free(t);
        return e ? (int)e->code : ERR_INVALID;
    }
    parser p = {.a = t->arena, .t = lx.toks, .n = lx.ntok, .e = e};
    t->root = p_body(&p, NULL);
    if (!t->root) {
        tmpl_free(t);
        return e ? (int)e->code : ERR_INVALID;
    }
    *out = t;
    return 0;
}

void tmpl_free(tmpl *t) {
    if (!t) return;
    jv_arena_free(t->arena);
    free(t);
}

/* ================================================================= values */

/* JV_OBJ kinds */
enum { OBJ_NS = 1, OBJ_LOOP, OBJ_MACRO, OBJ_BUILTIN, OBJ_METHOD };

enum builtin_id {
    BI_RANGE = 1, BI_NAMESPACE, BI_DICT, BI_RAISE, BI_STRFTIME,
    /* methods */
    M_STARTSWITH, M_ENDSWITH, M_SPLIT, M_RSPLIT, M_STRIP, M_LSTRIP, M_RSTRIP, M_LOWER, M_UPPER, M_TITLE,
    M_CAPITALIZE, M_REPLACE, M_FIND, M_RFIND, M_COUNT, M_JOIN, M_SPLITLINES, M_ISDIGIT, M_ISALPHA,
    M_ISALNUM, M_ISSPACE, M_ISLOWER, M_ISUPPER, M_REMOVEPREFIX, M_REMOVESUFFIX, M_INDEX,
    M_ITEMS, M_KEYS, M_VALUES, M_GET,
    M_LCOUNT, M_LINDEX,
    M_CYCLE,
};

typedef struct method {
    int id;
    jv self;
} method;

typedef struct loopobj {
    const jv_list *items;
    size_t i;
} loopobj;

typedef struct scope {
    struct scope *parent;
    jv_dict *vars;
} scope;

typedef struct rctx {
    jv_arena *a;
    const tmpl *t;
    jv_buf *out; /* where text goes now (macros capture into their own) */
    scope *root;  /* template top level */
    const jv_dict *ctx; /* the render context */
    long steps, max_steps;
    int depth, max_depth;
    size_t max_output;
    err *e;
} rctx;

enum { ST_OK = 0, ST_ERR, ST_BREAK, ST_CONTINUE };

static int rfail(rctx *r, int line, const char *fmt, const char *arg) {
    char msg[400];
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    err_set(r->e, ERR_INVALID, "template error, line %d: %s", line, msg);
    return ST_ERR;
}

static int nomem(rctx *r) {
    err_set(r->e, ERR_INVALID, "template used more memory than allowed");
    return ST_ERR;
}

static int step(rctx *r, int line) {
    if (++r->steps > r->max_steps) return rfail(r, line, "step limit exceeded (%s)", "too many loop iterations or calls");
    return ST_OK;
}

static jv mkstr(rctx *r, const char *p, size_t n) {
    const jv_str *s = jv_str_new(r->a, p, n);
    if (!s) return jv_undef();
    return jv_strv(s);
}

static jv mkobj(int sub, void *o) {
    jv v = {0};
    v.type = JV_OBJ;
    v.sub = (uint8_t)sub;
    v.u.o = o;
    return v;
}

static jv mklist(jv_list *l, int tuple) {
    jv v = {0};
    v.type = JV_LIST;
    v.sub = (uint8_t)tuple;
    v.u.l = l;
    return v;
}

static jv mkdict(jv_dict *d) {
    jv v = {0};
    v.type = JV_DICT;
    v.u.d = d;
    return v;
}

static int is_numeric(jv v) { return v.type == JV_INT || v.type == JV_FLOAT || v.type == JV_BOOL; }
static double num_f(jv v) { return v.type == JV_FLOAT ? v.u.f : (double)v.u.i; }

static const char *type_name(jv v) {
    switch ((jv_type)v.type) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return v.sub ? "tuple" : "list";
    case JV_DICT: return "dict";
    case JV_OBJ: return v.sub == OBJ_NS ? "Namespace" : v.sub == OBJ_LOOP ? "LoopContext" : "function";
    }
    return "object";
}

/* str(v) into the arena */
static int to_str(rctx *r, jv v, jv *out) {
    if (v.type == JV_STR) { *out = v; return ST_OK; }
    jv_buf b;
    jv_buf_init(&b, r->max_output);
    if (v.type == JV_OBJ) {
        if (v.sub == OBJ_NS) jv_buf_puts(&b, "<Namespace>");
        else if (v.sub == OBJ_LOOP) jv_buf_puts(&b, "<LoopContext>");
        else jv_buf_puts(&b, "<function>");
    } else {
        jv_to_str(&b, v);
    }
    if (b.over) { jv_buf_free(&b); return rfail(r, 0, "string too long%s", NULL); }
    *out = mkstr(r, b.p ? b.p : "", b.n);
    jv_buf_free(&b);
    return out->type == JV_STR ? ST_OK : nomem(r);
}

/* ---- scopes */

static scope *scope_new(rctx *r, scope *parent) {
    scope *s = jv_alloc(r->a, sizeof *s);
    if (!s) return NULL;
    s->parent = parent;
    s->vars = jv_dict_new(r->a, 0);
    return s->vars ? s : NULL;
}

static int scope_set(rctx *r, scope *s, const jv_str *name, jv v) {
    return jv_dict_set(r->a, s->vars, name, v) ? nomem(r) : ST_OK;
}

static jv lookup(rctx *r, scope *s, const jv_str *name) {
    for (; s; s = s->parent) {
        long i = jv_dict_find(s->vars, name->p, name->len);
        if (i >= 0) return s->vars->v[i];
    }
    long i = jv_dict_find(r->ctx, name->p, name->len);
    if (i >= 0) return r->ctx->v[i];
    static const struct { const char *n; int id; } globals[] = {
        {"range", BI_RANGE}, {"namespace", BI_NAMESPACE}, {"dict", BI_DICT},
        {"raise_exception", BI_RAISE}, {"strftime_now", BI_STRFTIME},
    };
    for (size_t k = 0; k < sizeof globals / sizeof *globals; k++)
        if (!strcmp(name->p, globals[k].n)) return mkobj(OBJ_BUILTIN, (void *)(intptr_t)globals[k].id);
    return jv_undef();
}

/* ---- attribute and item access (the sandbox's only doors) */

static jv mkmethod(rctx *r, int id, jv self) {
    method *m = jv_alloc(r->a, sizeof *m);
    if (!m) return jv_undef();
    m->id = id;
    m->self = self;
    return mkobj(OBJ_METHOD, m);
}

static int method_id(jv v, const char *name) {
    static const struct { const char *n; int id; } str_m[] = {
        {"startswith", M_STARTSWITH}, {"endswith", M_ENDSWITH}, {"split", M_SPLIT}, {"rsplit", M_RSPLIT},
        {"strip", M_STRIP}, {"lstrip", M_LSTRIP}, {"rstrip", M_RSTRIP}, {"lower", M_LOWER}, {"upper", M_UPPER},
        {"title", M_TITLE}, {"capitalize", M_CAPITALIZE}, {"replace", M_REPLACE}, {"find", M_FIND},
        {"rfind", M_RFIND}, {"count", M_COUNT}, {"join", M_JOIN}, {"splitlines", M_SPLITLINES},
        {"isdigit", M_ISDIGIT}, {"isalpha", M_ISALPHA}, {"isalnum", M_ISALNUM}, {"isspace", M_ISSPACE},
        {"islower", M_ISLOWER}, {"isupper", M_ISUPPER}, {"removeprefix", M_REMOVEPREFIX},
        {"removesuffix", M_REMOVESUFFIX}, {"index", M_INDEX},
    };
    static const struct { const char *n; int id; } dict_m[] = {
        {"items", M_ITEMS}, {"keys", M_KEYS}, {"values", M_VALUES}, {"get", M_GET},
    };
    if (v.type == JV_STR) {
        for (size_t k = 0; k < sizeof str_m / sizeof *str_m; k++)
            if (!strcmp(name, str_m[k].n)) return str_m[k].id;
    } else if (v.type == JV_DICT) {
        for (size_t k = 0; k < sizeof dict_m / sizeof *dict_m; k++)
            if (!strcmp(name, dict_m[k].n)) return dict_m[k].id;
    } else if (v.type == JV_LIST) {
        if (!strcmp(name, "count")) return M_LCOUNT;
        if (!strcmp(name, "index")) return M_LINDEX;
    }
    return 0;
}

/* names of methods that exist in Python but that the immutable sandbox
 * refuses: attribute access to them yields Undefined, not the dict key */
static int is_unsafe_method(jv v, const char *name) {
    static const char *dict_mut[] = {"clear", "pop", "popitem", "setdefault", "update", "copy", "fromkeys", NULL};
    static const char *list_mut[] = {"append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort", "copy", NULL};
    const char **set = v.type == JV_DICT ? dict_mut : v.type == JV_LIST ? list_mut : NULL;
    for (int k = 0; set && set[k]; k++)
        if (!strcmp(name, set[k])) return 1;
    return 0;
}

static int loop_attr(rctx *r, const loopobj *lo, const char *name, jv *out) {
    size_t n = lo->items->n, i = lo->i;
    (void)r;
    if (!strcmp(name, "index")) *out = jv_int((int64_t)i + 1);
    else if (!strcmp(name, "index0")) *out = jv_int((int64_t)i);
    else if (!strcmp(name, "revindex")) *out = jv_int((int64_t)(n - i));
    else if (!strcmp(name, "revindex0")) *out = jv_int((int64_t)(n - i - 1));
    else if (!strcmp(name, "first")) *out = jv_bool(i == 0);
    else if (!strcmp(name, "last")) *out = jv_bool(i + 1 == n);
    else if (!strcmp(name, "length")) *out = jv_int((int64_t)n);
    else if (!strcmp(name, "depth")) *out = jv_int(1);
    else if (!strcmp(name, "depth0")) *out = jv_int(0);
    else if (!strcmp(name, "previtem")) *out = i > 0 ? lo->items->v[i - 1] : jv_undef();
    else if (!strcmp(name, "nextitem")) *out = i + 1 < n ? lo->items->v[i + 1] : jv_undef();
    else if (!strcmp(name, "cycle")) *out = mkmethod(r, M_CYCLE, mkobj(OBJ_LOOP, (void *)lo));
    else *out = jv_undef();
    return ST_OK;
}

static int get_attr(rctx *r, int line, jv v, const jv_str *name, jv *out) {
    *out = jv_undef();
    if (v.type == JV_UNDEF) return rfail(r, line, "'%s' is undefined (attribute of an undefined value)", name->p);
    if (name->p[0] == '_' && name->len > 1 && name->p[1] == '_') return ST_OK; /* reflection: Undefined */
    if (v.type == JV_OBJ && v.sub == OBJ_NS) {
        const jv_dict *d = v.u.o;
        long i = jv_dict_find(d, name->p, name->len);
        if (i >= 0) *out = d->v[i];
        return ST_OK;
    }
    if (v.type == JV_OBJ && v.sub == OBJ_LOOP) return loop_attr(r, v.u.o, name->p, out);
    int mid = method_id(v, name->p);
    if (mid) {
        *out = mkmethod(r, mid, v);
        return out->type == JV_OBJ ? ST_OK : nomem(r);
    }
    if (is_unsafe_method(v, name->p)) return ST_OK;
    if (v.type == JV_DICT) {
        long i = jv_dict_find(v.u.d, name->p, name->len);
        if (i >= 0) *out = v.u.d->v[i];
    }
    return ST_OK;
}

/* Python index on n items: negative counts from the end; -1 when out of range */
static long py_index(int64_t i, size_t n) {
    if (i < 0) i += (int64_t)n;
    if (i < 0 || (uint64_t)i >= n) return -1;
    return (long)i;
}

/* byte offsets of each code point of s, plus the end: offs[0..ncp] */
static size_t *cp_offsets(rctx *r, const jv_str *s, size_t *ncp) {
    size_t n = jv_utf8_count(s->p, s->len);
    size_t *o = jv_alloc(r->a, (n + 1) * sizeof *o);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < s->len; i++)
        if (((uint8_t)s->p[i] & 0xC0) != 0x80) o[k++] = i;
    o[k] = s->len;
    *ncp = n;
    return o;
}

static int get_item(rctx *r, int line, jv v, jv key, jv *out) {
    *out = jv_undef();
    if (v.type == JV_UNDEF) return rfail(r, line, "cannot index an undefined value%s", NULL);
    if (v.type == JV_DICT) {
        if (key.type == JV_STR) {
            long i = jv_dict_find(v.u.d, key.u.s->p, key.u.s->len);
            if (i >= 0) { *out = v.u.d->v[i]; return ST_OK; }
        }
        if (key.type == JV_STR) return get_attr(r, line, v, key.u.s, out);
        return ST_OK;
    }
    if ((v.type == JV_LIST || v.type == JV_STR) && (key.type == JV_INT || key.type == JV_BOOL)) {
        if (v.type == JV_LIST) {
            if (v.sub == 2) return ST_OK;
            long i = py_index(key.u.i, v.u.l->n);
            if (i >= 0) *out = v.u.l->v[i];
            return ST_OK;
        }
        size_t ncp;
        size_t *o = cp_offsets(r, v.u.s, &ncp);
        if (!o) return nomem(r);
        long i = py_index(key.u.i, ncp);
        if (i >= 0) {
            *out = mkstr(r, v.u.s->p + o[i], o[i + 1] - o[i]);
            if (out->type != JV_STR) return nomem(r);
        }
        return ST_OK;
    }
    if (key.type == JV_STR) return get_attr(r, line, v, key.u.s, out);
    return ST_OK;
}

/* Python slice indices for length n */
static void slice_idx(jv lo, jv hi, jv st, size_t n, int64_t *start, int64_t *stop, int64_t *stepv) {
    int64_t s = (st.type == JV_INT || st.type == JV_BOOL) ? st.u.i : 1;
    *stepv = s;
    int64_t len = (int64_t)n;
    int64_t a, b;
    if (s > 0) {
        a = (lo.type == JV_INT || lo.type == JV_BOOL) ? lo.u.i : 0;
        b = (hi.type == JV_INT || hi.type == JV_BOOL) ? hi.u.i : len;
        if (a < 0) { a += len; if (a < 0) a = 0; } else if (a > len) a = len;
        if (b < 0) { b += len; if (b < 0) b = 0; } else if (b > len) b = len;
    } else {
        a = (lo.type == JV_INT || lo.type == JV_BOOL) ? lo.u.i : len - 1;
        b = (hi.type == JV_INT || hi.type == JV_BOOL) ? hi.u.i : -1 - len;
        if (a < 0) { a += len; if (a < -1) a = -1; } else if (a >= len) a = len - 1;
        if (b < 0) { b += len; if (b < -1) b = -1; } else if (b >= len) b = len - 1;
    }
    *start = a;
    *stop = b;
}

static int do_slice(rctx *r, int line, jv v, jv lo, jv hi, jv st, jv *out) {
    for (int k = 0; k < 3; k++) {
        jv x = k == 0 ? lo : k == 1 ? hi : st;
        if (x.type != JV_UNDEF && x.type != JV_NONE && x.type != JV_INT && x.type != JV_BOOL)
            return rfail(r, line, "slice indices must be integers or None%s", NULL);
    }
    if ((st.type == JV_INT || st.type == JV_BOOL) && st.u.i == 0) return rfail(r, line, "slice step cannot be zero%s", NULL);
    if (v.type == JV_UNDEF) return rfail(r, line, "cannot slice an undefined value%s", NULL);
    if (v.type == JV_LIST) {
        int64_t a, b, s;
        slice_idx(lo, hi, st, v.u.l->n, &a, &b, &s);
        jv_list *l = jv_list_new(r->a, 0);
        if (!l) return nomem(r);
        for (int64_t i = a; s > 0 ? i < b : i > b; i += s)
            if (jv_list_push(r->a, l, v.u.l->v[i])) return nomem(r);
        *out = mklist(l, v.sub);
        return ST_OK;
    }
    if (v.type == JV_STR) {
        size_t ncp;
        size_t *o = cp_offsets(r, v.u.s, &ncp);
        if (!o) return nomem(r);
        int64_t a, b, s;
        slice_idx(lo, hi, st, ncp, &a, &b, &s);
        jv_buf buf;
        jv_buf_init(&buf, (size_t)-1);
        for (int64_t i = a; s > 0 ? i < b : i > b; i += s) jv_buf_put(&buf, v.u.s->p + o[i], o[i + 1] - o[i]);
        *out = mkstr(r, buf.p ? buf.p : "", buf.n);
        jv_buf_free(&buf);
        return out->type == JV_STR ? ST_OK : nomem(r);
    }
    *out = jv_undef();
    return ST_OK;
}

/* iteration as Python does it: lists, tuples, dict keys, string chars */
static int iter_list(rctx *r, int line, jv v, const jv_list **out) {
    static const jv_list empty = {0, 0, NULL};
    if (v.type == JV_LIST) { *out = v.u.l; return ST_OK; }
    if (v.type == JV_UNDEF) { *out = &empty; return ST_OK; }
    if (v.type == JV_DICT) {
        jv_list *l = jv_list_new(r->a, v.u.d->n);
        if (!l) return nomem(r);
        for (size_t i = 0; i < v.u.d->n; i++) l->v[l->n++] = jv_strv(v.u.d->k[i]);
        *out = l;
        return ST_OK;
    }
    if (v.type == JV_STR) {
        jv_list *l = jv_list_new(r->a, 0);
        if (!l) return nomem(r);
        for (size_t i = 0; i < v.u.s->len;) {
            uint32_t cp;
            int n = jv_utf8_next(v.u.s->p + i, v.u.s->len - i, &cp);
            jv c = mkstr(r, v.u.s->p + i, (size_t)n);
            if (c.type != JV_STR || jv_list_push(r->a, l, c)) return nomem(r);
            i += (size_t)n;
        }
        *out = l;
        return ST_OK;
    }
    return rfail(r, line, "'%s' object is not iterable", type_name(v));
}

static int py_len(rctx *r, int line, jv v, int64_t *n) {
    switch ((jv_type)v.type) {
    case JV_UNDEF: *n = 0; return ST_OK;
    case JV_STR: *n = (int64_t)jv_utf8_count(v.u.s->p, v.u.s->len); return ST_OK;
    case JV_LIST:
        if (v.sub == 2) return rfail(r, line, "object of type 'generator' has no len()%s", NULL);
        *n = (int64_t)v.u.l->n;
        return ST_OK;
    case JV_DICT: *n = (int64_t)v.u.d->n; return ST_OK;
    default: return rfail(r, line, "object of type '%s' has no len()", type_name(v));
    }
}

/* ---- operators */

static int contains(rctx *r, int line, jv hay, jv needle, int *res) {
    *res = 0;
    if (hay.type == JV_STR) {
        if (needle.type != JV_STR) return rfail(r, line, "'in <string>' requires string as left operand%s", NULL);
        *res = memmem(hay.u.s->p, hay.u.s->len, needle.u.s->p, needle.u.s->len) != NULL || needle.u.s->len == 0;
        return ST_OK;
    }
    if (hay.type == JV_LIST) {
        for (size_t i = 0; i < hay.u.l->n; i++)
            if (jv_equal(hay.u.l->v[i], needle)) { *res = 1; break; }
        return ST_OK;
    }
    if (hay.type == JV_DICT) {
        if (needle.type == JV_STR) *res = jv_dict_find(hay.u.d, needle.u.s->p, needle.u.s->len) >= 0;
        return ST_OK;
    }
    if (hay.type == JV_UNDEF) return ST_OK;
    return rfail(r, line, "argument of type '%s' is not iterable", type_name(hay));
}

static int cmp_order(rctx *r, int line, jv a, jv b, int *c) {
    if (is_numeric(a) && is_numeric(b)) {
        if (a.type != JV_FLOAT && b.type != JV_FLOAT) *c = (a.u.i > b.u.i) - (a.u.i < b.u.i);
        else {
            double x = num_f(a), y = num_f(b);
            *c = (x > y) - (x < y);
        }
        return ST_OK;
    }
    if (a.type == JV_STR && b.type == JV_STR) {
        size_t n = a.u.s->len < b.u.s->len ? a.u.s->len : b.u.s->len;
        int m = memcmp(a.u.s->p, b.u.s->p, n);
        *c = m ? (m > 0) - (m < 0) : (a.u.s->len > b.u.s->len) - (a.u.s->len < b.u.s->len);
        return ST_OK;
    }
    if (a.type == JV_LIST && b.type == JV_LIST && a.sub == b.sub) {
        size_t n = a.u.l->n < b.u.l->n ? a.u.l->n : b.u.l->n;
        for (size_t i = 0; i < n; i++) {
            if (jv_equal(a.u.l->v[i], b.u.l->v[i])) continue;
            return cmp_order(r, line, a.u.l->v[i], b.u.l->v[i], c);
        }
        *c = (a.u.l->n > b.u.l->n) - (a.u.l->n < b.u.l->n);
        return ST_OK;
    }
    char msg[96];
    snprintf(msg, sizeof msg, "'<' not supported between '%s' and '%s'", type_name(a), type_name(b));
    return rfail(r, line, "%s", msg);
}

static int arith(rctx *r, int line, const char *op, jv a, jv b, jv *out) {
    if (a.type == JV_UNDEF || b.type == JV_UNDEF) return rfail(r, line, "undefined value in '%s' operation", op);
    if (!strcmp(op, "~")) {
        jv sa, sb;
        if (to_str(r, a, &sa) || to_str(r, b, &sb)) return ST_ERR;
        if (sa.u.s->len + sb.u.s->len > r->max_output) return rfail(r, line, "string too long%s", NULL);
        jv_str *s = jv_alloc(r->a, sizeof *s + sa.u.s->len + sb.u.s->len + 1);
        if (!s) return nomem(r);
        s->len = sa.u.s->len + sb.u.s->len;
        memcpy(s->p, sa.u.s->p, sa.u.s->len);
        memcpy(s->p + sa.u.s->len, sb.u.s->p, sb.u.s->len);
        s->p[s->len] = '\0';
        *out = jv_strv(s);
        return ST_OK;
    }
    if (is_numeric(a) && is_numeric(b)) {
        int fl = a.type == JV_FLOAT || b.type == JV_FLOAT;
        int64_t x = a.u.i, y = b.u.i, z;
        double fx = num_f(a), fy = num_f(b);
        switch (op[0]) {
        case '+':
            if (fl) { *out = jv_float(fx + fy); return ST_OK; }
            if (__builtin_add_overflow(x, y, &z)) break;
            *out = jv_int(z);
            return ST_OK;
        case '-':
            if (fl) { *out = jv_float(fx - fy); return ST_OK; }
            if (__builtin_sub_overflow(x, y, &z)) break;
            *out = jv_int(z);
            return ST_OK;
        case '*':
            if (op[1] == '*') {
                if (fl || y < 0) {
                    if (fx == 0 && fy < 0) return rfail(r, line, "zero to a negative power%s", NULL);
                    *out = jv_float(pow(fx, fy));
                    return ST_OK;
                }
                int64_t acc = 1;
                for (int64_t k = 0; k < y; k++) {
                    if (__builtin_mul_overflow(acc, x, &acc)) return rfail(r, line, "integer overflow%s", NULL);
                    if (acc == 0 || acc == 1) break;
                    if (acc == -1) { acc = ((y - k - 1) % 2 == 0) ? -1 : 1; break; }
                }
                *out = jv_int(acc);
                return ST_OK;
            }
            if (fl) { *out = jv_float(fx * fy); return ST_OK; }
            if (__builtin_mul_overflow(x, y, &z)) break;
            *out = jv_int(z);
            return ST_OK;
        case '/':
            if (fy == 0) return rfail(r, line, "division by zero%s", NULL);
            if (op[1] == '/') {
                if (fl) { *out = jv_float(floor(fx / fy)); return ST_OK; }
                if (x == INT64_MIN && y == -1) break;
                z = x / y;
                if ((x % y != 0) && ((x < 0) != (y < 0))) z--;
                *out = jv_int(z);
                return ST_OK;
            }
            *out = jv_float(fx / fy);
            return ST_OK;
        case '%':
            if (fy == 0) return rfail(r, line, "modulo by zero%s", NULL);
            if (fl) {
                double m = fmod(fx, fy);
                if (m != 0 && ((m < 0) != (fy < 0))) m += fy;
                *out = jv_float(m);
                return ST_OK;
            }
            if (x == INT64_MIN && y == -1) { *out = jv_int(0); return ST_OK; }
            z = x % y;
            if (z != 0 && ((z < 0) != (y < 0))) z += y;
            *out = jv_int(z);
            return ST_OK;
        }
        return rfail(r, line, "integer overflow in '%s'", op);
    }
    if (op[0] == '+' && a.type == JV_STR && b.type == JV_STR) return arith(r, line, "~", a, b, out);
    if (op[0] == '+' && a.type == JV_LIST && b.type == JV_LIST && a.sub == b.sub) {
        jv_list *l = jv_list_new(r->a, a.u.l->n + b.u.l->n);
        if (!l) return nomem(r);
        if (a.u.l->n) memcpy(l->v, a.u.l->v, a.u.l->n * sizeof(jv));
        if (b.u.l->n) memcpy(l->v + a.u.l->n, b.u.l->v, b.u.l->n * sizeof(jv));
        l->n = a.u.l->n + b.u.l->n;
        *out = mklist(l, a.sub);
        return ST_OK;
    }
    if (!strcmp(op, "*") && (((a.type == JV_STR || a.type == JV_LIST) && (b.type == JV_INT || b.type == JV_BOOL)) ||
                             ((b.type == JV_STR || b.type == JV_LIST) && (a.type == JV_INT || a.type == JV_BOOL)))) {
        jv seq = (a.type == JV_STR || a.type == JV_LIST) ? a : b;
        int64_t times = (a.type == JV_STR || a.type == JV_LIST) ? b.u.i : a.u.i;
        if (times < 0) times = 0;
        size_t unit = seq.type == JV_STR ? seq.u.s->len : seq.u.l->n * sizeof(jv);
        if (unit && (uint64_t)times > r->max_output / unit) return rfail(r, line, "sequence repetition too large%s", NULL);
        if (seq.type == JV_STR) {
            jv_str *s = jv_alloc(r->a, sizeof *s + unit * (size_t)times + 1);
            if (!s) return nomem(r);
            s->len = unit * (size_t)times;
            for (int64_t k = 0; k < times; k++) memcpy(s->p + (size_t)k * unit, seq.u.s->p, unit);
            s->p[s->len] = '\0';
            *out = jv_strv(s);
        } else {
            jv_list *l = jv_list_new(r->a, seq.u.l->n * (size_t)times);
            if (!l) return nomem(r);
            for (int64_t k = 0; k < times && unit; k++) memcpy(l->v + (size_t)k * seq.u.l->n, seq.u.l->v, unit);
            l->n = seq.u.l->n * (size_t)times;
            *out = mklist(l, seq.sub);
        }
        return ST_OK;
    }
    char msg[96];
    snprintf(msg, sizeof msg, "unsupported operand types for %s: '%s' and '%s'", op, type_name(a), type_name(b));
    return rfail(r, line, "%s", msg);
}

/* ================================================================= eval */

static int eval(rctx *r, scope *s, const node *n, jv *out);
static int exec_body(rctx *r, scope *s, const node *n);

typedef struct args {
    jv *pos;
    int npos;
    const jv_str **kwn;
    jv *kwv;
    int nkw;
} args;

static int eval_args(rctx *r, scope *s, const node *n, args *a, int skip_first) {
    (void)skip_first;
    a->npos = n->nkids;
    a->nkw = n->nnames;
    a->pos = a->npos ? jv_alloc(r->a, (size_t)a->npos * sizeof(jv)) : NULL;
    a->kwv = a->nkw ? jv_alloc(r->a, (size_t)a->nkw * sizeof(jv)) : NULL;
    a->kwn = n->names;
    if ((a->npos && !a->pos) || (a->nkw && !a->kwv)) return nomem(r);
    for (int k = 0; k < a->npos; k++)
        if (eval(r, s, n->kids[k], &a->pos[k])) return ST_ERR;
    for (int k = 0; k < a->nkw; k++)
        if (eval(r, s, n->vals[k], &a->kwv[k])) return ST_ERR;
    return ST_OK;
}

/* argument k of a Python-style signature: positional k or keyword `name` */
static jv arg(const args *a, int k, const char *name, jv dflt) {
    if (k >= 0 && k < a->npos) return a->pos[k];
    for (int i = 0; i < a->nkw; i++)
        if (name && !strcmp(a->kwn[i]->p, name)) return a->kwv[i];
    return dflt;
}

static int check_args(rctx *r, int line, const args *a, int maxpos, const char *const *kwnames, const char *what) {
    if (a->npos > maxpos) return rfail(r, line, "too many arguments to %s", what);
    for (int i = 0; i < a->nkw; i++) {
        int ok = 0;
        for (int k = 0; kwnames && kwnames[k]; k++)
            if (!strcmp(a->kwn[i]->p, kwnames[k])) ok = 1;
        if (!ok) return rfail(r, line, "unexpected keyword argument to %s", what);
    }
    return ST_OK;
}

/* ---- tests ("is ...") */

static int run_test(rctx *r, int line, const char *name, jv v, const args *a, int *res) {
    jv x = arg(a, 0, NULL, jv_undef());
    int t = v.type;
    if (!strcmp(name, "defined")) *res = t != JV_UNDEF;
    else if (!strcmp(name, "undefined")) *res = t == JV_UNDEF;
    else if (!strcmp(name, "none")) *res = t == JV_NONE;
    else if (!strcmp(name, "string")) *res = t == JV_STR;
    else if (!strcmp(name, "mapping")) *res = t == JV_DICT;
    else if (!strcmp(name, "number")) *res = t == JV_INT || t == JV_FLOAT || t == JV_BOOL;
    else if (!strcmp(name, "integer")) *res = t == JV_INT;
    else if (!strcmp(name, "float")) *res = t == JV_FLOAT;
    else if (!strcmp(name, "boolean")) *res = t == JV_BOOL;
    else if (!strcmp(name, "true")) *res = t == JV_BOOL && v.u.i;
    else if (!strcmp(name, "false")) *res = t == JV_BOOL && !v.u.i;
    else if (!strcmp(name, "iterable")) *res = t == JV_LIST || t == JV_DICT || t == JV_STR || t == JV_UNDEF;
    else if (!strcmp(name, "sequence")) *res = t == JV_LIST || t == JV_DICT || t == JV_STR || t == JV_UNDEF;
    else if (!strcmp(name, "callable")) *res = t == JV_OBJ && v.sub != OBJ_NS && v.sub != OBJ_LOOP;
    else if (!strcmp(name, "eq") || !strcmp(name, "equalto") || !strcmp(name, "==")) *res = jv_equal(v, x);
    else if (!strcmp(name, "ne") || !strcmp(name, "!=")) *res = !jv_equal(v, x);
    else if (!strcmp(name, "sameas")) {
        *res = v.type == x.type && (t == JV_NONE || t == JV_UNDEF || ((t == JV_BOOL || t == JV_INT) && v.u.i == x.u.i) ||
                                   (t == JV_OBJ && v.u.o == x.u.o) || (t == JV_LIST && v.u.l == x.u.l) ||
                                   (t == JV_DICT && v.u.d == x.u.d) || (t == JV_STR && v.u.s == x.u.s));
    } else if (!strcmp(name, "lt") || !strcmp(name, "gt") || !strcmp(name, "le") || !strcmp(name, "ge") ||
               !strcmp(name, "lessthan") || !strcmp(name, "greaterthan") || !strcmp(name, "<") || !strcmp(name, ">") ||
               !strcmp(name, "<=") || !strcmp(name, ">=")) {
        int c;
        if (cmp_order(r, line, v, x, &c)) return ST_ERR;
        if (name[0] == 'l' || name[0] == '<') *res = name[1] == 'e' || name[1] == '=' ? c <= 0 : c < 0;
        else *res = name[1] == 'e' || name[1] == '=' ? c >= 0 : c > 0;
    } else if (!strcmp(name, "in")) {
        return contains(r, line, x, v, res);
    } else if (!strcmp(name, "odd") || !strcmp(name, "even") || !strcmp(name, "divisibleby")) {
        if (t != JV_INT && t != JV_BOOL) return rfail(r, line, "test '%s' needs an integer", name);
        int64_t m = 2;
        if (name[0] == 'd') {
            if (x.type != JV_INT || x.u.i == 0) return rfail(r, line, "divisibleby needs a nonzero integer%s", NULL);
            m = x.u.i;
        }
        int64_t rem = (m == -1) ? 0 : v.u.i % m;
        *res = name[0] == 'o' ? rem != 0 : rem == 0;
    } else if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (t != JV_STR) return rfail(r, line, "test '%s' needs a string", name);
        int has = 0, bad = 0;
        for (size_t i = 0; i < v.u.s->len; i++) {
            char c = v.u.s->p[i];
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) has = 1;
            if (name[0] == 'l' ? (c >= 'A' && c <= 'Z') : (c >= 'a' && c <= 'z')) bad = 1;
        }
        *res = has && !bad;
    } else {
        return rfail(r, line, "no test named '%s'", name);
    }
    return ST_OK;
}

/* ---- builtin calls and methods */

static int str_strip(rctx *r, jv s, jv chars, int left, int right, jv *out) {
    const char *p = s.u.s->p;
    size_t b = 0, e = s.u.s->len;
    if (chars.type == JV_STR) {
        const jv_str *c = chars.u.s;
        /* chars is a set of code points */
        while (b < e) {
            uint32_t cp;
            int l = jv_utf8_next(p + b, e - b, &cp);
            if (!left || !memmem(c->p, c->len, p + b, (size_t)l)) break;
            b += (size_t)l;
        }
        while (e > b && right) {
            size_t q = e - 1;
            while (q > b && ((uint8_t)p[q] & 0xC0) == 0x80) q--;
            if (!memmem(c->p, c->len, p + q, e - q)) break;
            e = q;
        }
    } else {
        if (left) b = skip_ws(p, e, 0);
        if (right) e = b + rstrip_len(p + b, e - b);
    }
    *out = mkstr(r, p + b, e - b);
    return out->type == JV_STR ? ST_OK : nomem(r);
}

static int str_case(rctx *r, jv s, int mode, jv *out) {
    /* ASCII case mapping; mode 0 lower, 1 upper, 2 capitalize, 3 title */
    jv o = mkstr(r, s.u.s->p, s.u.s->len);
    if (o.type != JV_STR) return nomem(r);
    char *p = (char *)o.u.s->p;
    int prev_alpha = 0;
    for (size_t i = 0; i < o.u.s->len; i++) {
        char c = p[i];
        int up;
        if (mode == 0) up = 0;
        else if (mode == 1) up = 1;
        else if (mode == 2) up = i == 0;
        else up = !prev_alpha;
        if (up && c >= 'a' && c <= 'z') p[i] = (char)(c - 32);
        if (!up && c >= 'A' && c <= 'Z') p[i] = (char)(c + 32);
        prev_alpha = ((uint8_t)c >= 0x80) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    }
    *out = o;
    return ST_OK;
}

static int str_split(rctx *r, int line, jv s, jv sep, jv maxsplit, int from_right, jv *out) {
    int64_t maxs = (maxsplit.type == JV_INT) ? maxsplit.u.i : -1;
    jv_list *l = jv_list_new(r->a, 0);
    if (!l) return nomem(r);
    const char *p = s.u.s->p;
    size_t n = s.u.s->len;
    if (sep.type == JV_STR) {
        size_t sl = sep.u.s->len;
        if (sl == 0) return rfail(r, line, "empty separator%s", NULL);
        if (!from_right) {
            size_t b = 0;
            int64_t cnt = 0;
            while (1) {
                const char *f = (maxs < 0 || cnt < maxs) ? memmem(p + b, n - b, sep.u.s->p, sl) : NULL;
                if (!f) break;
                jv piece = mkstr(r, p + b, (size_t)(f - (p + b)));
                if (piece.type != JV_STR || jv_list_push(r->a, l, piece)) return nomem(r);
                b = (size_t)(f - p) + sl;
                cnt++;
            }
            jv piece = mkstr(r, p + b, n - b);
            if (piece.type != JV_STR || jv_list_push(r->a, l, piece)) return nomem(r);
        } else {
            /* collect from the right, then reverse */
            size_t e = n;
            int64_t cnt = 0;
            while (maxs < 0 || cnt < maxs) {
                size_t found = (size_t)-1;
                for (size_t k = e; k >= sl; k--)
                    if (memcmp(p + k - sl, sep.u.s->p, sl) == 0) { found = k - sl; break; }
                if (found == (size_t)-1) break;
                jv piece = mkstr(r, p + found + sl, e - found - sl);
                if (piece.type != JV_STR || jv_list_push(r->a, l, piece)) return nomem(r);
                e = found;
                cnt++;
            }
            jv piece = mkstr(r, p, e);
            if (piece.type != JV_STR || jv_list_push(r->a, l, piece)) return nomem(r);
            for (size_t i = 0; i < l->n / 2; i++) {
                jv t = l->v[i];
                l->v[i] = l->v[l->n - 1 - i];
                l->v[l->n - 1 - i] = t;
            }
        }
    } else {
        /* whitespace split, empties dropped (maxsplit from the left only) */
        size_t i = 0;
        int64_t cnt = 0;
        while (1) {
            i = skip_ws(p, n, i);
            if (i >= n) break;
            size_t j = i;
            if (maxs >= 0 && cnt >= maxs) {
                j = n;
                size_t e = rstrip_len(p + i, n - i);
                jv piece = mkstr(r, p + i, e);
                if (piece.type != JV_STR || jv_list_push(r->a, l, piece)) return nomem(r);
                break;
            }
            int w;
            while (j < n && !(w = ws_len(p + j, n - j))) {
                uint32_t cp;
                j += (size_t)jv_utf8_next(p + j, n - j, &cp);
            }
            jv piece = mkstr(r, p + i, j - i);
            if (piece.type != JV_STR || jv_list_push(r->a, l, piece)) return nomem(r);
            cnt++;
            i = j;
        }
    }
    *out = mklist(l, 0);
    return ST_OK;
}

static int str_replace(rctx *r, int line, jv s, jv old, jv new_, jv count, jv *out) {
    if (old.type != JV_STR || new_.type != JV_STR) return rfail(r, line, "replace() arguments must be strings%s", NULL);
    int64_t maxc = count.type == JV_INT ? count.u.i : -1;
    jv_buf b;
    jv_buf_init(&b, r->max_output);
    const char *p = s.u.s->p;
    size_t n = s.u.s->len, i = 0;
    int64_t done = 0;
    if (old.u.s->len == 0) {
        /* Python inserts `new` between every code point and at both ends */
        for (size_t k = 0; k <= n;) {
            if (maxc < 0 || done < maxc) { jv_buf_put(&b, new_.u.s->p, new_.u.s->len); done++; }
            if (k == n) break;
            uint32_t cp;
            int l = jv_utf8_next(p + k, n - k, &cp);
            jv_buf_put(&b, p + k, (size_t)l);
            k += (size_t)l;
        }
    } else {
        while (i <= n) {
            const char *f = (maxc < 0 || done < maxc) ? memmem(p + i, n - i, old.u.s->p, old.u.s->len) : NULL;
            if (!f) { jv_buf_put(&b, p + i, n - i); break; }
            jv_buf_put(&b, p + i, (size_t)(f - (p + i)));
            jv_buf_put(&b, new_.u.s->p, new_.u.s->len);
            i = (size_t)(f - p) + old.u.s->len;
            done++;
        }
    }
    if (b.over) { jv_buf_free(&b); return rfail(r, line, "string too long%s", NULL); }
    *out = mkstr(r, b.p ? b.p : "", b.n);
    jv_buf_free(&b);
    return out->type == JV_STR ? ST_OK : nomem(r);
}

static int items_of(rctx *r, jv d, jv *out) {
    jv_list *l = jv_list_new(r->a, d.u.d->n);
    if (!l) return nomem(r);
    for (size_t i = 0; i < d.u.d->n; i++) {
        jv_list *pair = jv_list_new(r->a, 2);
        if (!pair) return nomem(r);
        pair->v[0] = jv_strv(d.u.d->k[i]);
        pair->v[1] = d.u.d->v[i];
        pair->n = 2;
        l->v[l->n++] = mklist(pair, 1);
    }
    *out = mklist(l, 0);
    return ST_OK;
}

static int join_list(rctx *r, int line, const jv_list *l, jv sep, jv *out) {
    jv_buf b;
    jv_buf_init(&b, r->max_output);
    for (size_t i = 0; i < l->n; i++) {
        if (i && sep.type == JV_STR) jv_buf_put(&b, sep.u.s->p, sep.u.s->len);
        jv s;
        if (to_str(r, l->v[i], &s)) { jv_buf_free(&b); return ST_ERR; }
        jv_buf_put(&b, s.u.s->p, s.u.s->len);
    }
    if (b.over) { jv_buf_free(&b); return rfail(r, line, "string too long%s", NULL); }
    *out = mkstr(r, b.p ? b.p : "", b.n);
    jv_buf_free(&b);
    return out->type == JV_STR ? ST_OK : nomem(r);
}

static int call_method(rctx *r, int line, const method *m, const args *a, jv *out) {
    jv s = m->self;
    jv a0 = arg(a, 0, NULL, jv_undef()), a1 = arg(a, 1, NULL, jv_undef());
    const char *p = s.type == JV_STR ? s.u.s->p : NULL;
    size_t n = s.type == JV_STR ? s.u.s->len : 0;
    switch (m->id) {
    case M_STARTSWITH:
    case M_ENDSWITH: {
        /* prefix may be a tuple of strings */
        const jv_list *alts = NULL;
        jv one[1];
        jv_list single = {1, 1, one};
        if (a0.type == JV_STR) { one[0] = a0; alts = &single; }
        else if (a0.type == JV_LIST && a0.sub == 1) alts = a0.u.l;
        else return rfail(r, line, "startswith/endswith needs a string or a tuple of strings%s", NULL);
        int res = 0;
        for (size_t k = 0; k < alts->n && !res; k++) {
            jv x = alts->v[k];
            if (x.type != JV_STR) return rfail(r, line, "startswith/endswith needs strings%s", NULL);
            size_t l = x.u.s->len;
            if (l <= n) res = m->id == M_STARTSWITH ? !memcmp(p, x.u.s->p, l) : !memcmp(p + n - l, x.u.s->p, l);
        }
        *out = jv_bool(res);
        return ST_OK;
    }
    case M_SPLIT:
    case M_RSPLIT: {
        jv sep = arg(a, 0, "sep", jv_none()), mx = arg(a, 1, "maxsplit", jv_int(-1));
        if (sep.type != JV_STR && sep.type != JV_NONE) return rfail(r, line, "split separator must be a string%s", NULL);
        return str_split(r, line, s, sep, mx, m->id == M_RSPLIT && sep.type == JV_STR, out);
    }
    case M_STRIP: case M_LSTRIP: case M_RSTRIP:
        if (a0.type != JV_STR && a0.type != JV_UNDEF && a0.type != JV_NONE) return rfail(r, line, "strip arg must be None or str%s", NULL);
        return str_strip(r, s, a0, m->id != M_RSTRIP, m->id != M_LSTRIP, out);
    case M_LOWER: return str_case(r, s, 0, out);
    case M_UPPER: return str_case(r, s, 1, out);
    case M_CAPITALIZE: return str_case(r, s, 2, out);
    case M_TITLE: return str_case(r, s, 3, out);
    case M_REPLACE: return str_replace(r, line, s, a0, a1, arg(a, 2, "count", jv_undef()), out);
    case M_FIND: case M_RFIND: case M_INDEX: case M_COUNT: {
        if (a0.type != JV_STR) return rfail(r, line, "must be str%s", NULL);
        const jv_str *x = a0.u.s;
        if (m->id == M_COUNT) {
            int64_t c = 0;
            if (x->len == 0) c = (int64_t)jv_utf8_count(p, n) + 1;
            else for (const char *f = p; (f = memmem(f, n - (size_t)(f - p), x->p, x->len)); f += x->len) c++;
            *out = jv_int(c);
            return ST_OK;
        }
        const char *f = NULL;
        if (m->id == M_RFIND) {
            for (size_t k = n + 1; k-- > 0;)
                if (k + x->len <= n && !memcmp(p + k, x->p, x->len)) { f = p + k; break; }
        } else {
            f = x->len ? memmem(p, n, x->p, x->len) : p;
        }
        if (!f && m->id == M_INDEX) return rfail(r, line, "substring not found%s", NULL);
        *out = jv_int(f ? (int64_t)jv_utf8_count(p, (size_t)(f - p)) : -1);
        return ST_OK;
    }
    case M_JOIN: {
        const jv_list *l;
        if (iter_list(r, line, a0, &l)) return ST_ERR;
        for (size_t k = 0; k < l->n; k++)
            if (l->v[k].type != JV_STR) return rfail(r, line, "join() needs strings%s", NULL);
        return join_list(r, line, l, s, out);
    }
    case M_SPLITLINES: {
        jv_list *l = jv_list_new(r->a, 0);
        if (!l) return nomem(r);
        size_t b = 0;
        for (size_t k = 0; k < n; k++) {
            if (p[k] == '\n' || p[k] == '\r') {
                jv piece = mkstr(r, p + b, k - b);
                if (piece.type != JV_STR || jv_list_push(r->a, l, piece)) return nomem(r);
                if (p[k] == '\r' && k + 1 < n && p[k + 1] == '\n') k++;
                b = k + 1;
            }
        }
        if (b < n) {
            jv piece = mkstr(r, p + b, n - b);
            if (piece.type != JV_STR || jv_list_push(r->a, l, piece)) return nomem(r);
        }
        *out = mklist(l, 0);
        return ST_OK;
    }
    case M_ISDIGIT: case M_ISALPHA: case M_ISALNUM: case M_ISSPACE: case M_ISLOWER: case M_ISUPPER: {
        int ok = n > 0, cased = 0;
        for (size_t k = 0; k < n; k++) {
            char c = p[k];
            int d = c >= '0' && c <= '9', lo = c >= 'a' && c <= 'z', up = c >= 'A' && c <= 'Z';
            if (m->id == M_ISDIGIT) ok &= d;
            else if (m->id == M_ISALPHA) ok &= lo || up;
            else if (m->id == M_ISALNUM) ok &= lo || up || d;
            else if (m->id == M_ISSPACE) ok &= ws_len(p + k, n - k) > 0;
            else if (m->id == M_ISLOWER) { ok &= !up; cased |= lo; }
            else { ok &= !lo; cased |= up; }
        }
        if (m->id == M_ISLOWER || m->id == M_ISUPPER) ok = ok && cased;
        *out = jv_bool(ok);
        return ST_OK;
    }
    case M_REMOVEPREFIX: case M_REMOVESUFFIX: {
        if (a0.type != JV_STR) return rfail(r, line, "must be str%s", NULL);
        size_t l = a0.u.s->len;
        if (l <= n && (m->id == M_REMOVEPREFIX ? !memcmp(p, a0.u.s->p, l) : !memcmp(p + n - l, a0.u.s->p, l))) {
            *out = m->id == M_REMOVEPREFIX ? mkstr(r, p + l, n - l) : mkstr(r, p, n - l);
            return out->type == JV_STR ? ST_OK : nomem(r);
        }
        *out = s;
        return ST_OK;
    }
    case M_ITEMS: return items_of(r, s, out);
    case M_KEYS: case M_VALUES: {
        jv_list *l = jv_list_new(r->a, s.u.d->n);
        if (!l) return nomem(r);
        for (size_t k = 0; k < s.u.d->n; k++) l->v[l->n++] = m->id == M_KEYS ? jv_strv(s.u.d->k[k]) : s.u.d->v[k];
        *out = mklist(l, 0);
        return ST_OK;
    }
    case M_GET: {
        *out = arg(a, 1, NULL, jv_none());
        if (a0.type == JV_STR) {
            long k = jv_dict_find(s.u.d, a0.u.s->p, a0.u.s->len);
            if (k >= 0) *out = s.u.d->v[k];
        }
        return ST_OK;
    }
    case M_LCOUNT: case M_LINDEX: {
        int64_t c = 0, at = -1;
        for (size_t k = 0; k < s.u.l->n; k++)
            if (jv_equal(s.u.l->v[k], a0)) { c++; if (at < 0) at = (int64_t)k; }
        if (m->id == M_LINDEX && at < 0) return rfail(r, line, "value is not in list%s", NULL);
        *out = jv_int(m->id == M_LCOUNT ? c : at);
        return ST_OK;
    }
    case M_CYCLE: {
        if (a->npos == 0) return rfail(r, line, "no items for cycling given%s", NULL);
        const loopobj *lo = s.u.o;
        *out = a->pos[lo->i % (size_t)a->npos];
        return ST_OK;
    }
    }
    return rfail(r, line, "unsupported method%s", NULL);
}

static int call_macro(rctx *r, int line, const node *m, const args *a, jv *out);

static int call_value(rctx *r, int line, jv f, const args *a, jv *out) {
    *out = jv_undef();
    if (step(r, line)) return ST_ERR;
    if (f.type == JV_UNDEF) return rfail(r, line, "call of an undefined value%s", NULL);
    if (f.type != JV_OBJ || f.sub == OBJ_NS || f.sub == OBJ_LOOP) return rfail(r, line, "'%s' object is not callable", type_name(f));
    if (f.sub == OBJ_METHOD) return call_method(r, line, f.u.o, a, out);
    if (f.sub == OBJ_MACRO) return call_macro(r, line, f.u.o, a, out);
    int id = (int)(intptr_t)f.u.o;
    switch (id) {
    case BI_RANGE: {
        if (a->nkw || a->npos < 1 || a->npos > 3) return rfail(r, line, "range() takes 1 to 3 integer arguments%s", NULL);
        int64_t v[3] = {0, 0, 1};
        for (int k = 0; k < a->npos; k++) {
            if (a->pos[k].type != JV_INT && a->pos[k].type != JV_BOOL) return rfail(r, line, "range() needs integers%s", NULL);
            v[k] = a->pos[k].u.i;
        }
        int64_t start = a->npos == 1 ? 0 : v[0], stop = a->npos == 1 ? v[0] : v[1], st = a->npos == 3 ? v[2] : 1;
        if (st == 0) return rfail(r, line, "range() arg 3 must not be zero%s", NULL);
        double cnt = st > 0 ? ceil(((double)stop - (double)start) / (double)st) : ceil(((double)start - (double)stop) / (double)-st);
        if (cnt < 0) cnt = 0;
        if (cnt > TMPL_MAX_RANGE) return rfail(r, line, "range too big (the sandbox allows %s items)", "100000");
        jv_list *l = jv_list_new(r->a, (size_t)cnt);
        if (!l) return nomem(r);
        for (int64_t k = 0; k < (int64_t)cnt; k++) l->v[l->n++] = jv_int(start + k * st);
        *out = mklist(l, 0);
        return ST_OK;
    }
    case BI_NAMESPACE:
    case BI_DICT: {
        jv_dict *d = jv_dict_new(r->a, 0);
        if (!d) return nomem(r);
        if (a->npos > 1) return rfail(r, line, "too many positional arguments%s", NULL);
        if (a->npos == 1) {
            jv src = a->pos[0];
            if (src.type == JV_DICT) {
                for (size_t k = 0; k < src.u.d->n; k++)
                    if (jv_dict_set(r->a, d, src.u.d->k[k], src.u.d->v[k])) return nomem(r);
            } else if (src.type == JV_LIST) {
                for (size_t k = 0; k < src.u.l->n; k++) {
                    jv pr = src.u.l->v[k];
                    if (pr.type != JV_LIST || pr.u.l->n != 2 || pr.u.l->v[0].type != JV_STR)
                        return rfail(r, line, "dict()/namespace() needs (str, value) pairs%s", NULL);
                    if (jv_dict_set(r->a, d, pr.u.l->v[0].u.s, pr.u.l->v[1])) return nomem(r);
                }
            } else {
                return rfail(r, line, "dict()/namespace() needs a mapping%s", NULL);
            }
        }
        for (int k = 0; k < a->nkw; k++)
            if (jv_dict_set(r->a, d, a->kwn[k], a->kwv[k])) return nomem(r);
        if (id == BI_NAMESPACE) {
            for (size_t k = 0; k < d->n; k++)
                if (d->k[k]->p[0] == '_') return rfail(r, line, "namespace attributes cannot start with '_'%s", NULL);
            *out = mkobj(OBJ_NS, d);
        } else {
            *out = mkdict(d);
        }
        return ST_OK;
    }
    case BI_RAISE: {
        jv msg;
        if (to_str(r, arg(a, 0, "message", jv_undef()), &msg)) return ST_ERR;
        err_set(r->e, ERR_INVALID, "%s", msg.u.s->p);
        return ST_ERR;
    }
    case BI_STRFTIME: {
        jv fmt = arg(a, 0, "format", jv_undef());
        if (fmt.type != JV_STR) return rfail(r, line, "strftime_now needs a format string%s", NULL);
        if (fmt.u.s->len > 256) return rfail(r, line, "strftime_now format too long%s", NULL);
        time_t now = time(NULL);
        struct tm tmv;
        localtime_r(&now, &tmv);
        char buf[1024];
        size_t len = strftime(buf, sizeof buf, fmt.u.s->p, &tmv);
        *out = mkstr(r, buf, len);
        return out->type == JV_STR ? ST_OK : nomem(r);
    }
    }
    return rfail(r, line, "not callable%s", NULL);
}

/* ---- filters */

static int apply_filter(rctx *r, int line, const char *name, jv v, const args *a, jv *out);

static int select_like(rctx *r, int line, const char *name, jv v, const args *a, jv *out) {
    /* select/reject(test, args...), selectattr/rejectattr(attr, test, args...) */
    int attr = strstr(name, "attr") != NULL;
    int keep_true = name[0] == 's';
    const jv_list *l;
    if (!jv_truthy(v)) v = jv_undef(); /* jinja: "if value:" before iterating */
    if (iter_list(r, line, v, &l)) return ST_ERR;
    int first_test = attr ? 1 : 0;
    jv attrname = arg(a, 0, NULL, jv_undef());
    if (attr && attrname.type != JV_STR) return rfail(r, line, "%s needs an attribute name", name);
    jv tname = a->npos > first_test ? a->pos[first_test] : jv_undef();
    if (tname.type != JV_UNDEF && tname.type != JV_STR) return rfail(r, line, "%s needs a test name", name);
    int ntest_args = a->npos > first_test + 1 ? a->npos - first_test - 1 : 0;
    args ta = {ntest_args ? a->pos + first_test + 1 : NULL, ntest_args, NULL, NULL, 0};
    jv_list *o = jv_list_new(r->a, 0);
    if (!o) return nomem(r);
    for (size_t k = 0; k < l->n; k++) {
        if (step(r, line)) return ST_ERR;
        jv item = l->v[k];
        if (attr) {
            /* jinja's attribute getter: dotted path, item lookup first */
            jv cur = item;
            const char *path = attrname.u.s->p;
            while (1) {
                const char *dot = strchr(path, '.');
                size_t pl = dot ? (size_t)(dot - path) : strlen(path);
                jv key = mkstr(r, path, pl);
                if (key.type != JV_STR) return nomem(r);
                int isnum = pl > 0;
                for (size_t q = 0; q < pl; q++) isnum &= path[q] >= '0' && path[q] <= '9';
                if (isnum) key = jv_int(strtoll(path, NULL, 10));
                if (get_item(r, line, cur, key, &cur)) return ST_ERR;
                if (!dot) break;
                path = dot + 1;
            }
            item = cur;
        }
        int res;
        if (tname.type == JV_UNDEF) res = jv_truthy(item);
        else if (run_test(r, line, tname.u.s->p, item, &ta, &res)) return ST_ERR;
        if (res == keep_true && jv_list_push(r->a, o, l->v[k])) return nomem(r);
    }
    *out = mklist(o, 2);
    return ST_OK;
}

static int apply_filter(rctx *r, int line, const char *name, jv v, const args *a, jv *out) {
    if (step(r, line)) return ST_ERR;
    *out = jv_undef();
    if (!strcmp(name, "tojson")) {
        static const char *const kw[] = {"ensure_ascii", "indent", "separators", "sort_keys", NULL};
        if (check_args(r, line, a, 4, kw, "tojson")) return ST_ERR;
        jv ea = arg(a, 0, "ensure_ascii", jv_bool(0)), ind = arg(a, 1, "indent", jv_none());
        jv seps = arg(a, 2, "separators", jv_none()), sk = arg(a, 3, "sort_keys", jv_bool(0));
        char indent_buf[64];
        const char *indent = NULL;
        if (ind.type == JV_INT || ind.type == JV_BOOL) {
            int64_t w = ind.u.i < 0 ? 0 : ind.u.i;
            if (w > 32) return rfail(r, line, "tojson indent too large%s", NULL);
            memset(indent_buf, ' ', (size_t)w);
            indent_buf[w] = '\0';
            indent = indent_buf;
        } else if (ind.type == JV_STR) {
            if (ind.u.s->len >= sizeof indent_buf) return rfail(r, line, "tojson indent too large%s", NULL);
            indent = ind.u.s->p;
        } else if (ind.type != JV_NONE) {
            return rfail(r, line, "tojson indent must be an int or a string%s", NULL);
        }
        const char *isep = NULL, *ksep = NULL;
        if (seps.type == JV_LIST) {
            if (seps.u.l->n != 2 || seps.u.l->v[0].type != JV_STR || seps.u.l->v[1].type != JV_STR)
                return rfail(r, line, "tojson separators must be two strings%s", NULL);
            isep = seps.u.l->v[0].u.s->p;
            ksep = seps.u.l->v[1].u.s->p;
        } else if (seps.type != JV_NONE) {
            return rfail(r, line, "tojson separators must be a pair%s", NULL);
        }
        jv_buf b;
        jv_buf_init(&b, r->max_output);
        err e2 = {0};
        if (jv_dump(&b, v, indent, isep, ksep, jv_truthy(sk), jv_truthy(ea), &e2)) {
            jv_buf_free(&b);
            return rfail(r, line, "%s", e2.msg);
        }
        if (b.over) { jv_buf_free(&b); return rfail(r, line, "tojson output too long%s", NULL); }
        *out = mkstr(r, b.p ? b.p : "", b.n);
        jv_buf_free(&b);
        return out->type == JV_STR ? ST_OK : nomem(r);
    }
    if (!strcmp(name, "safe") || !strcmp(name, "string")) {
        if (!strcmp(name, "safe")) { *out = v; return ST_OK; }
        return to_str(r, v, out);
    }
    if (!strcmp(name, "trim")) {
        jv s;
        if (to_str(r, v, &s)) return ST_ERR;
        jv chars = arg(a, 0, "chars", jv_none());
        return str_strip(r, s, chars, 1, 1, out);
    }
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        int64_t n;
        if (py_len(r, line, v, &n)) return ST_ERR;
        *out = jv_int(n);
        return ST_OK;
    }
    if (!strcmp(name, "upper") || !strcmp(name, "lower") || !strcmp(name, "capitalize") || !strcmp(name, "title")) {
        jv s;
        if (to_str(r, v, &s)) return ST_ERR;
        int mode = name[0] == 'l' ? 0 : name[0] == 'u' ? 1 : name[0] == 'c' ? 2 : 3;
        return str_case(r, s, mode, out);
    }
    if (!strcmp(name, "replace")) {
        jv s;
        if (to_str(r, v, &s)) return ST_ERR;
        return str_replace(r, line, s, arg(a, 0, "old", jv_undef()), arg(a, 1, "new", jv_undef()), arg(a, 2, "count", jv_undef()), out);
    }
    if (!strcmp(name, "join")) {
        const jv_list *l;
        if (iter_list(r, line, v, &l)) return ST_ERR;
        jv sep = arg(a, 0, "d", jv_undef());
        jv at = arg(a, 1, "attribute", jv_undef());
        if (at.type != JV_UNDEF) {
            jv_list *m = jv_list_new(r->a, l->n);
            if (!m) return nomem(r);
            for (size_t k = 0; k < l->n; k++) {
                jv x;
                if (get_item(r, line, l->v[k], at, &x)) return ST_ERR;
                m->v[m->n++] = x;
            }
            l = m;
        }
        if (sep.type != JV_UNDEF && sep.type != JV_STR) {
            if (to_str(r, sep, &sep)) return ST_ERR;
        }
        return join_list(r, line, l, sep, out);
    }
    if (!strcmp(name, "items")) {
        if (v.type == JV_UNDEF) { *out = mklist(jv_list_new(r->a, 0), 0); return out->u.l ? ST_OK : nomem(r); }
        if (v.type != JV_DICT) return rfail(r, line, "can only get item pairs from a mapping%s", NULL);
        if (items_of(r, v, out)) return ST_ERR;
        out->sub = 2;
        return ST_OK;
    }
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        jv dflt = arg(a, 0, "default_value", mkstr(r, "", 0));
        int boolean = jv_truthy(arg(a, 1, "boolean", jv_bool(0)));
        *out = (v.type == JV_UNDEF || (boolean && !jv_truthy(v))) ? dflt : v;
        return ST_OK;
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        const jv_list *l;
        if (iter_list(r, line, v, &l)) return ST_ERR;
        if (l->n) *out = name[0] == 'f' ? l->v[0] : l->v[l->n - 1];
        return ST_OK;
    }
    if (!strcmp(name, "list")) {
        const jv_list *l;
        if (iter_list(r, line, v, &l)) return ST_ERR;
        jv_list *c = jv_list_new(r->a, l->n);
        if (!c) return nomem(r);
        if (l->n) memcpy(c->v, l->v, l->n * sizeof(jv));
        c->n = l->n;
        *out = mklist(c, 0);
        return ST_OK;
    }
    if (!strcmp(name, "reverse")) {
        if (v.type == JV_STR) return do_slice(r, line, v, jv_none(), jv_none(), jv_int(-1), out);
        const jv_list *l;
        if (iter_list(r, line, v, &l)) return ST_ERR;
        jv_list *c = jv_list_new(r->a, l->n);
        if (!c) return nomem(r);
        for (size_t k = 0; k < l->n; k++) c->v[k] = l->v[l->n - 1 - k];
        c->n = l->n;
        *out = mklist(c, 2);
        return ST_OK;
    }
    if (!strcmp(name, "unique")) {
        const jv_list *l;
        if (iter_list(r, line, v, &l)) return ST_ERR;
        jv_list *c = jv_list_new(r->a, l->n);
        if (!c) return nomem(r);
        for (size_t k = 0; k < l->n; k++) {
            if (step(r, line)) return ST_ERR;
            int seen = 0;
            for (size_t q = 0; q < c->n && !seen; q++) seen = jv_equal(c->v[q], l->v[k]);
            if (!seen) c->v[c->n++] = l->v[k];
        }
        *out = mklist(c, 2);
        return ST_OK;
    }
    if (!strcmp(name, "select") || !strcmp(name, "reject") || !strcmp(name, "selectattr") || !strcmp(name, "rejectattr"))
        return select_like(r, line, name, v, a, out);
    if (!strcmp(name, "map")) {
        const jv_list *l;
        if (!jv_truthy(v)) v = jv_undef(); /* jinja: "if value:" before iterating */
        if (iter_list(r, line, v, &l)) return ST_ERR;
        jv at = arg(a, -1, "attribute", jv_undef());
        jv_list *c = jv_list_new(r->a, l->n);
        if (!c) return nomem(r);
        for (size_t k = 0; k < l->n; k++) {
            jv x;
            if (at.type != JV_UNDEF) {
                if (get_item(r, line, l->v[k], at, &x)) return ST_ERR;
                if (x.type == JV_UNDEF) x = arg(a, -1, "default", jv_undef());
            } else {
                jv fname = arg(a, 0, NULL, jv_undef());
                if (fname.type != JV_STR) return rfail(r, line, "map needs a filter name or attribute=%s", NULL);
                args fa = {a->npos > 1 ? a->pos + 1 : NULL, a->npos - 1, a->kwn, a->kwv, a->nkw};
                if (apply_filter(r, line, fname.u.s->p, l->v[k], &fa, &x)) return ST_ERR;
            }
            c->v[c->n++] = x;
        }
        *out = mklist(c, 2);
        return ST_OK;
    }
    if (!strcmp(name, "int")) {
        jv dflt = arg(a, 0, "default", jv_int(0));
        if (v.type == JV_INT) *out = v;
        else if (v.type == JV_BOOL) *out = jv_int(v.u.i);
        else if (v.type == JV_FLOAT && isfinite(v.u.f) && fabs(v.u.f) < 9.2e18) *out = jv_int((int64_t)v.u.f);
        else if (v.type == JV_STR) {
            char *end;
            const char *s = v.u.s->p;
            while (*s == ' ' || *s == '\t' || *s == '\n') s++;
            long long iv = strtoll(s, &end, 10);
            if (end != s && *end == '\0') *out = jv_int(iv);
            else {
                double f = strtod(s, &end);
                *out = (end != s && *end == '\0' && isfinite(f) && fabs(f) < 9.2e18) ? jv_int((int64_t)f) : dflt;
            }
        } else *out = dflt;
        return ST_OK;
    }
    if (!strcmp(name, "float")) {
        jv dflt = arg(a, 0, "default", jv_float(0));
        if (is_numeric(v)) *out = jv_float(num_f(v));
        else if (v.type == JV_STR) {
            char *end;
            double f = strtod(v.u.s->p, &end);
            *out = (end != v.u.s->p && *end == '\0') ? jv_float(f) : dflt;
        } else *out = dflt;
        return ST_OK;
    }
    if (!strcmp(name, "abs")) {
        if (v.type == JV_FLOAT) *out = jv_float(fabs(v.u.f));
        else if (v.type == JV_INT || v.type == JV_BOOL) {
            if (v.u.i == INT64_MIN) return rfail(r, line, "integer overflow%s", NULL);
            *out = jv_int(v.u.i < 0 ? -v.u.i : v.u.i);
        } else return rfail(r, line, "bad operand type for abs()%s", NULL);
        return ST_OK;
    }
    if (!strcmp(name, "escape") || !strcmp(name, "e") || !strcmp(name, "forceescape")) {
        jv s;
        if (to_str(r, v, &s)) return ST_ERR;
        jv_buf b;
        jv_buf_init(&b, r->max_output);
        for (size_t k = 0; k < s.u.s->len; k++) {
            char c = s.u.s->p[k];
            if (c == '&') jv_buf_puts(&b, "&amp;");
            else if (c == '<') jv_buf_puts(&b, "&lt;");
            else if (c == '>') jv_buf_puts(&b, "&gt;");
            else if (c == '"') jv_buf_puts(&b, "&#34;");
            else if (c == '\'') jv_buf_puts(&b, "&#39;");
            else jv_buf_putc(&b, c);
        }
        if (b.over) { jv_buf_free(&b); return rfail(r, line, "string too long%s", NULL); }
        *out = mkstr(r, b.p ? b.p : "", b.n);
        jv_buf_free(&b);
        return out->type == JV_STR ? ST_OK : nomem(r);
    }
    if (!strcmp(name, "round")) {
        jv prec = arg(a, 0, "precision", jv_int(0));
        jv method_ = arg(a, 1, "method", jv_undef());
        if (!is_numeric(v)) return rfail(r, line, "round needs a number%s", NULL);
        double x = num_f(v), m = pow(10, (double)(prec.type == JV_INT ? prec.u.i : 0));
        const char *md = method_.type == JV_STR ? method_.u.s->p : "common";
        double y;
        if (!strcmp(md, "floor")) y = floor(x * m) / m;
        else if (!strcmp(md, "ceil")) y = ceil(x * m) / m;
        else {
            char tmp[64];
            snprintf(tmp, sizeof tmp, "%.*f", (int)(prec.type == JV_INT && prec.u.i > 0 && prec.u.i < 20 ? prec.u.i : 0), x);
            y = strtod(tmp, NULL);
        }
        *out = jv_float(y);
        return ST_OK;
    }
    if (!strcmp(name, "dictsort")) {
        if (v.type != JV_DICT) return rfail(r, line, "dictsort needs a mapping%s", NULL);
        int cs = jv_truthy(arg(a, 0, "case_sensitive", jv_bool(0)));
        jv by = arg(a, 1, "by", jv_undef());
        int by_value = by.type == JV_STR && !strcmp(by.u.s->p, "value");
        int rev = jv_truthy(arg(a, 2, "reverse", jv_bool(0)));
        jv items;
        if (items_of(r, v, &items)) return ST_ERR;
        jv_list *l = items.u.l;
        /* stable insertion sort on the key (lowercased strings unless case_sensitive) */
        for (size_t i = 1; i < l->n; i++) {
            jv x = l->v[i];
            size_t j = i;
            while (j > 0) {
                jv ka = l->v[j - 1].u.l->v[by_value], kb = x.u.l->v[by_value];
                if (!cs && ka.type == JV_STR && kb.type == JV_STR) {
                    if (str_case(r, ka, 0, &ka) || str_case(r, kb, 0, &kb)) return ST_ERR;
                }
                int c;
                if (cmp_order(r, line, ka, kb, &c)) return ST_ERR;
                if (rev ? c >= 0 : c <= 0) break;
                l->v[j] = l->v[j - 1];
                j--;
            }
            l->v[j] = x;
        }
        *out = items;
        return ST_OK;
    }
    if (!strcmp(name, "min") || !strcmp(name, "max")) {
        const jv_list *l;
        if (iter_list(r, line, v, &l)) return ST_ERR;
        int cs = jv_truthy(arg(a, 0, "case_sensitive", jv_bool(0)));
        if (arg(a, 1, "attribute", jv_undef()).type != JV_UNDEF) return rfail(r, line, "min/max attribute= is not supported%s", NULL);
        if (!l->n) return ST_OK; /* Undefined, as jinja returns */
        jv best = l->v[0];
        for (size_t k = 1; k < l->n; k++) {
            jv x = l->v[k], kb = best, kx = x;
            if (!cs && kb.type == JV_STR && kx.type == JV_STR) {
                if (str_case(r, kb, 0, &kb) || str_case(r, kx, 0, &kx)) return ST_ERR;
            }
            int c;
            if (cmp_order(r, line, kx, kb, &c)) return ST_ERR;
            if (name[1] == 'i' ? c < 0 : c > 0) best = x;
        }
        *out = best;
        return ST_OK;
    }
    if (!strcmp(name, "sum")) {
        const jv_list *l;
        if (iter_list(r, line, v, &l)) return ST_ERR;
        jv acc = arg(a, 1, "start", jv_int(0));
        for (size_t k = 0; k < l->n; k++)
            if (arith(r, line, "+", acc, l->v[k], &acc)) return ST_ERR;
        *out = acc;
        return ST_OK;
    }
    if (!strcmp(name, "indent")) {
        jv s;
        if (to_str(r, v, &s)) return ST_ERR;
        jv w = arg(a, 0, "width", jv_int(4));
        int first = jv_truthy(arg(a, 1, "first", jv_bool(0))), blank = jv_truthy(arg(a, 2, "blank", jv_bool(0)));
        jv_buf ind;
        jv_buf_init(&ind, 4096);
        if (w.type == JV_STR) jv_buf_put(&ind, w.u.s->p, w.u.s->len);
        else for (int64_t k = 0; k < (w.type == JV_INT ? w.u.i : 4) && k < 4096; k++) jv_buf_putc(&ind, ' ');
        jv_buf b;
        jv_buf_init(&b, r->max_output);
        if (first) jv_buf_put(&b, ind.p ? ind.p : "", ind.n);
        const char *p = s.u.s->p;
        size_t n = s.u.s->len;
        for (size_t k = 0; k < n; k++) {
            jv_buf_putc(&b, p[k]);
            if (p[k] == '\n' && k + 1 < n) {
                int empty = p[k + 1] == '\n';
                if (blank || !empty) jv_buf_put(&b, ind.p ? ind.p : "", ind.n);
            }
        }
        jv_buf_free(&ind);
        if (b.over) { jv_buf_free(&b); return rfail(r, line, "string too long%s", NULL); }
        *out = mkstr(r, b.p ? b.p : "", b.n);
        jv_buf_free(&b);
        return out->type == JV_STR ? ST_OK : nomem(r);
    }
    return rfail(r, line, "no filter named '%s'", name);
}

/* ---- expressions */

static int eval(rctx *r, scope *s, const node *n, jv *out) {
    *out = jv_undef();
    switch (n->kind) {
    case E_CONST: *out = n->cval; return ST_OK;
    case E_NAME: *out = lookup(r, s, n->name); return ST_OK;
    case E_ATTR: {
        jv o;
        if (eval(r, s, n->a, &o)) return ST_ERR;
        return get_attr(r, n->line, o, n->name, out);
    }
    case E_ITEM: {
        jv o, k;
        if (eval(r, s, n->a, &o) || eval(r, s, n->b, &k)) return ST_ERR;
        return get_item(r, n->line, o, k, out);
    }
    case E_SLICE: {
        jv o, lo = jv_none(), hi = jv_none(), st = jv_none();
        if (eval(r, s, n->a, &o)) return ST_ERR;
        if (n->b && eval(r, s, n->b, &lo)) return ST_ERR;
        if (n->c && eval(r, s, n->c, &hi)) return ST_ERR;
        if (n->cond && eval(r, s, n->cond, &st)) return ST_ERR;
        return do_slice(r, n->line, o, lo, hi, st, out);
    }
    case E_CALL: {
        jv f;
        args a;
        if (eval(r, s, n->a, &f) || eval_args(r, s, n, &a, 0)) return ST_ERR;
        return call_value(r, n->line, f, &a, out);
    }
    case E_FILTER: {
        jv v;
        args a;
        if (eval(r, s, n->a, &v) || eval_args(r, s, n, &a, 0)) return ST_ERR;
        return apply_filter(r, n->line, n->name->p, v, &a, out);
    }
    case E_TEST: {
        jv v;
        args a;
        if (eval(r, s, n->a, &v) || eval_args(r, s, n, &a, 0)) return ST_ERR;
        int res;
        if (run_test(r, n->line, n->name->p, v, &a, &res)) return ST_ERR;
        *out = jv_bool(n->negate ? !res : res);
        return ST_OK;
    }
    case E_NEG:
    case E_POS: {
        jv v;
        if (eval(r, s, n->a, &v)) return ST_ERR;
        if (!is_numeric(v)) return rfail(r, n->line, "bad operand type for unary operator: '%s'", type_name(v));
        if (n->kind == E_POS) *out = v.type == JV_BOOL ? jv_int(v.u.i) : v;
        else if (v.type == JV_FLOAT) *out = jv_float(-v.u.f);
        else if (v.u.i == INT64_MIN) return rfail(r, n->line, "integer overflow%s", NULL);
        else *out = jv_int(-v.u.i);
        return ST_OK;
    }
    case E_NOT: {
        jv v;
        if (eval(r, s, n->a, &v)) return ST_ERR;
        *out = jv_bool(!jv_truthy(v));
        return ST_OK;
    }
    case E_AND:
    case E_OR: {
        jv v;
        if (eval(r, s, n->a, &v)) return ST_ERR;
        if (jv_truthy(v) == (n->kind == E_OR)) { *out = v; return ST_OK; }
        return eval(r, s, n->b, out);
    }
    case E_BIN: {
        jv a, b;
        if (eval(r, s, n->a, &a) || eval(r, s, n->b, &b)) return ST_ERR;
        return arith(r, n->line, n->op, a, b, out);
    }
    case E_CMP: {
        jv l;
        if (eval(r, s, n->a, &l)) return ST_ERR;
        for (int k = 0; k < n->nkids; k++) {
            const node *pair = n->kids[k];
            jv rv;
            if (eval(r, s, pair->a, &rv)) return ST_ERR;
            const char *op = pair->op;
            int res;
            if (!strcmp(op, "==")) res = jv_equal(l, rv);
            else if (!strcmp(op, "!=")) res = !jv_equal(l, rv);
            else if (!strcmp(op, "in") || !strcmp(op, "ni")) {
                if (contains(r, n->line, rv, l, &res)) return ST_ERR;
                if (op[0] == 'n') res = !res;
            } else {
                if (l.type == JV_UNDEF || rv.type == JV_UNDEF) return rfail(r, n->line, "comparison with an undefined value%s", NULL);
                int c;
                if (cmp_order(r, n->line, l, rv, &c)) return ST_ERR;
                if (!strcmp(op, "<")) res = c < 0;
                else if (!strcmp(op, ">")) res = c > 0;
                else if (!strcmp(op, "<=")) res = c <= 0;
                else res = c >= 0;
            }
            if (!res) { *out = jv_bool(0); return ST_OK; }
            l = rv;
        }
        *out = jv_bool(1);
        return ST_OK;
    }
    case E_COND: {
        jv c;
        if (eval(r, s, n->a, &c)) return ST_ERR;
        if (jv_truthy(c)) return eval(r, s, n->b, out);
        if (n->c) return eval(r, s, n->c, out);
        *out = jv_undef();
        return ST_OK;
    }
    case E_LIST:
    case E_TUPLE: {
        jv_list *l = jv_list_new(r->a, (size_t)n->nkids);
        if (!l) return nomem(r);
        for (int k = 0; k < n->nkids; k++)
            if (eval(r, s, n->kids[k], &l->v[l->n++])) return ST_ERR;
        *out = mklist(l, n->kind == E_TUPLE);
        return ST_OK;
    }
    case E_DICT: {
        jv_dict *d = jv_dict_new(r->a, 0);
        if (!d) return nomem(r);
        for (int k = 0; k < n->nkids; k++) {
            jv key, val;
            if (eval(r, s, n->kids[k], &key) || eval(r, s, n->vals[k], &val)) return ST_ERR;
            if (key.type != JV_STR) return rfail(r, n->line, "only string keys are supported in dict literals%s", NULL);
            if (jv_dict_set(r->a, d, key.u.s, val)) return nomem(r);
        }
        *out = mkdict(d);
        return ST_OK;
    }
    default: break;
    }
    return rfail(r, n->line, "internal: not an expression%s", NULL);
}

/* ---- statements */

static int emit(rctx *r, int line, const char *p, size_t n) {
    jv_buf_put(r->out, p, n);
    if (r->out->over) return rfail(r, line, "output larger than the limit%s", NULL);
    return ST_OK;
}

static int assign_targets(rctx *r, int line, scope *s, const jv_str **names, int nnames, jv v) {
    if (nnames == 1) return scope_set(r, s, names[0], v);
    const jv_list *l;
    if (iter_list(r, line, v, &l)) return ST_ERR;
    if ((int)l->n != nnames) return rfail(r, line, "cannot unpack: wrong number of values%s", NULL);
    for (int k = 0; k < nnames; k++)
        if (scope_set(r, s, names[k], l->v[k])) return ST_ERR;
    return ST_OK;
}

static int capture(rctx *r, scope *s, const node *body, jv *out) {
    jv_buf buf;
    jv_buf_init(&buf, r->max_output);
    jv_buf *saved = r->out;
    r->out = &buf;
    int st = exec_body(r, s, body);
    r->out = saved;
    if (st == ST_OK) {
        *out = mkstr(r, buf.p ? buf.p : "", buf.n);
        if (out->type != JV_STR) st = nomem(r);
    }
    jv_buf_free(&buf);
    return st;
}

static int call_macro(rctx *r, int line, const node *m, const args *a, jv *out) {
    if (r->depth >= r->max_depth) return rfail(r, line, "recursion too deep (macro '%s')", m->name->p);
    if (a->npos > m->nnames) return rfail(r, line, "macro '%s' takes fewer arguments", m->name->p);
    scope *s = scope_new(r, r->root);
    if (!s) return nomem(r);
    for (int k = 0; k < a->nkw; k++) {
        int found = 0;
        for (int q = 0; q < m->nnames; q++)
            if (!strcmp(a->kwn[k]->p, m->names[q]->p)) found = 1;
        if (!found) return rfail(r, line, "macro '%s' got an unexpected keyword argument", m->name->p);
    }
    for (int q = 0; q < m->nnames; q++) {
        jv v = jv_undef();
        int given = 0;
        if (q < a->npos) { v = a->pos[q]; given = 1; }
        for (int k = 0; k < a->nkw; k++)
            if (!strcmp(a->kwn[k]->p, m->names[q]->p)) { v = a->kwv[k]; given = 1; }
        if (!given && m->vals[q] && eval(r, s, m->vals[q], &v)) return ST_ERR;
        if (scope_set(r, s, m->names[q], v)) return ST_ERR;
    }
    r->depth++;
    int st = capture(r, s, m->b, out);
    r->depth--;
    if (st == ST_BREAK || st == ST_CONTINUE) st = ST_OK;
    return st;
}

static int exec_for(rctx *r, scope *s, const node *n) {
    jv itv;
    if (eval(r, s, n->a, &itv)) return ST_ERR;
    const jv_list *items;
    if (iter_list(r, n->line, itv, &items)) return ST_ERR;
    if (n->cond) {
        jv_list *kept = jv_list_new(r->a, 0);
        if (!kept) return nomem(r);
        for (size_t i = 0; i < items->n; i++) {
            if (step(r, n->line)) return ST_ERR;
            scope *fs = scope_new(r, s);
            if (!fs || assign_targets(r, n->line, fs, n->names, n->nnames, items->v[i])) return fs ? ST_ERR : nomem(r);
            jv c;
            if (eval(r, fs, n->cond, &c)) return ST_ERR;
            if (jv_truthy(c) && jv_list_push(r->a, kept, items->v[i])) return nomem(r);
        }
        items = kept;
    }
    if (items->n == 0) return n->c ? exec_body(r, s, n->c) : ST_OK;
    loopobj *lo = jv_alloc(r->a, sizeof *lo);
    if (!lo) return nomem(r);
    lo->items = items;
    const jv_str *lname = jv_str_new(r->a, "loop", 4);
    if (!lname) return nomem(r);
    /* one scope, emptied per iteration: {% set %} in the body never outlives
     * its iteration (jinja2's rule), and a long loop does not eat the arena */
    scope *it = scope_new(r, s);
    if (!it) return nomem(r);
    for (size_t i = 0; i < items->n; i++) {
        if (step(r, n->line)) return ST_ERR;
        it->vars->n = 0;
        lo->i = i;
        if (scope_set(r, it, lname, mkobj(OBJ_LOOP, lo))) return ST_ERR;
        if (assign_targets(r, n->line, it, n->names, n->nnames, items->v[i])) return ST_ERR;
        int st = exec_body(r, it, n->b);
        if (st == ST_BREAK) break;
        if (st == ST_ERR) return st;
    }
    return ST_OK;
}

static int exec_node(rctx *r, scope *s, const node *n) {
    switch (n->kind) {
    case N_TEXT: return emit(r, n->line, n->cval.u.s->p, n->cval.u.s->len);
    case N_OUT: {
        jv v, sv;
        if (eval(r, s, n->a, &v)) return ST_ERR;
        if (v.type == JV_UNDEF) return ST_OK;
        if (to_str(r, v, &sv)) return ST_ERR;
        return emit(r, n->line, sv.u.s->p, sv.u.s->len);
    }
    case N_IF: {
        const node *x = n;
        while (x) {
            if (x->kind != N_IF) return exec_body(r, s, x); /* the else body */
            jv c;
            if (eval(r, s, x->a, &c)) return ST_ERR;
            if (jv_truthy(c)) return exec_body(r, s, x->b);
            x = x->c;
        }
        return ST_OK;
    }
    case N_FOR: return exec_for(r, s, n);
    case N_SET: {
        jv v;
        if (eval(r, s, n->a, &v)) return ST_ERR;
        if (n->attr) {
            jv ns = lookup(r, s, n->names[0]);
            if (ns.type != JV_OBJ || ns.sub != OBJ_NS) return rfail(r, n->line, "cannot assign attribute on non-namespace object%s", NULL);
            if (n->attr->p[0] == '_') return rfail(r, n->line, "namespace attributes cannot start with '_'%s", NULL);
            return jv_dict_set(r->a, (jv_dict *)ns.u.o, n->attr, v) ? nomem(r) : ST_OK;
        }
        return assign_targets(r, n->line, s, n->names, n->nnames, v);
    }
    case N_SETBLOCK: {
        jv v;
        int st = capture(r, s, n->b, &v);
        if (st) return st;
        return scope_set(r, s, n->name, v);
    }
    case N_MACRO: return scope_set(r, s, n->name, mkobj(OBJ_MACRO, (void *)n));
    case N_BREAK: return ST_BREAK;
    case N_CONTINUE: return ST_CONTINUE;
    case N_BLOCKLIST: return exec_body(r, s, n);
    default: break;
    }
    return rfail(r, n->line, "internal: not a statement%s", NULL);
}

static int exec_body(rctx *r, scope *s, const node *n) {
    for (int k = 0; k < n->nkids; k++) {
        int st = exec_node(r, s, n->kids[k]);
        if (st) return st;
    }
    return ST_OK;
}

static void render_limits(const tmpl_limits *limits, tmpl_limits *lim) {
    *lim = (tmpl_limits){4u << 20, 10000000, 64};
    if (limits) {
        if (limits->max_output) lim->max_output = limits->max_output;
        if (limits->max_steps > 0) lim->max_steps = limits->max_steps;
        if (limits->max_depth > 0) lim->max_depth = limits->max_depth;
    }
}

/* Renders with ctx (a JV_DICT, only read) into a fresh output; a is the arena
 * for everything the render creates. */
static int render_in(const tmpl *t, jv_arena *a, const jv_dict *ctx, const tmpl_limits *lim, char **out,
                     size_t *out_len, err *e) {
    jv_buf buf;
    jv_buf_init(&buf, lim->max_output);
    rctx r = {.a = a, .t = t, .out = &buf, .ctx = ctx, .max_steps = lim->max_steps,
              .max_depth = lim->max_depth, .max_output = lim->max_output, .e = e};
    r.root = scope_new(&r, NULL);
    int st = r.root ? exec_body(&r, r.root, t->root) : nomem(&r);
    if (st == ST_BREAK || st == ST_CONTINUE) st = ST_OK; /* jinja ignores a stray break at top level */
    if (st) {
        jv_buf_free(&buf);
        if (e && e->code == ERR_OK) err_set(e, ERR_INVALID, "template error");
        return e ? (int)e->code : ERR_INVALID;
    }
    if (!buf.p) {
        buf.p = malloc(1);
        if (!buf.p) return err_set(e, ERR_NOMEM, "template: out of memory");
        buf.p[0] = '\0';
    }
    *out = buf.p;
    if (out_len) *out_len = buf.n;
    return 0;
}

int tmpl_render(const tmpl *t, const char *ctx_json, size_t ctx_len, const tmpl_limits *limits, char **out,
                size_t *out_len, err *e) {
    *out = NULL;
    if (out_len) *out_len = 0;
    tmpl_limits lim;
    render_limits(limits, &lim);
    /* values are bounded by a multiple of the output cap plus the context */
    size_t cap = 16 * lim.max_output + 8 * ctx_len + (8u << 20);
    jv_arena *a = jv_arena_new(cap);
    if (!a) return err_set(e, ERR_NOMEM, "template: out of memory");
    jv ctx;
    err pe = {0};
    if (jv_parse(a, ctx_json, ctx_len, TMPL_CTX_DEPTH, &ctx, &pe) || ctx.type != JV_DICT) {
        jv_arena_free(a);
        return err_set(e, ERR_INVALID, "template context: %s", pe.code ? pe.msg : "not a JSON object");
    }
    int rc = render_in(t, a, ctx.u.d, &lim, out, out_len, e);
    jv_arena_free(a);
    return rc;
}

int tmpl_render_value(const tmpl *t, jv ctx, const tmpl_limits *limits, char **out, size_t *out_len, err *e) {
    *out = NULL;
    if (out_len) *out_len = 0;
    if (ctx.type != JV_DICT) return err_set(e, ERR_INVALID, "template context: not an object");
    tmpl_limits lim;
    render_limits(limits, &lim);
    /* the context's values live in the caller's arena; this one holds only
     * what the render creates */
    jv_arena *a = jv_arena_new(16 * lim.max_output + (8u << 20));
    if (!a) return err_set(e, ERR_NOMEM, "template: out of memory");
    int rc = render_in(t, a, ctx.u.d, &lim, out, out_len, e);
    jv_arena_free(a);
    return rc;
}
