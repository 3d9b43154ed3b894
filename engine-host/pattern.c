/*
 * pattern: a backtracking Lua pattern matcher that counts its steps.
 *
 * The matcher walks the pattern and the subject as Lua 5.4 does (single
 * character classes with *, +, - and ?; captures, position captures and
 * back references; %b and %f; ^ and $ anchors), recursing for what follows
 * a quantifier or a capture. Every recursion, every character examined by a
 * quantifier or a set, every character scanned by %b counts one step; every
 * ENGINE_SANDBOX_METER_STEPS steps the meter is called, and may raise, which
 * unwinds the matcher (it holds nothing but what is on the Lua stack).
 *
 * Both the subject and the pattern are Lua strings, so a byte past their
 * end exists and is '\0': the matcher reads it where Lua's does (p[1] at the
 * last pattern character, the subject's end for %f), and so behaves the same.
 */
#define _GNU_SOURCE /* memmem */
#include "pattern.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stddef.h>
#include <string.h>

#define MAX_CAPTURES 32   /* LUA_MAXCAPTURES */
#define MAX_RECURSION 200 /* as Lua's MAXCCALLS for patterns */
#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)
#define ESC '%'
#define SPECIALS "^$*+?.([%-"

typedef struct {
    const char *src_init; /* the subject */
    const char *src_end;
    const char *p_end; /* the pattern's end */
    lua_State *L;
    const engine_sandbox_meter *meter;
    unsigned steps; /* since the meter last heard of them */
    int depth;      /* recursion left */
    int level;      /* captures open or closed so far */
    struct {
        const char *init;
        ptrdiff_t len; /* or CAP_UNFINISHED, CAP_POSITION */
    } capture[MAX_CAPTURES];
} matcher;

static void step(matcher *m)
{
    if (++m->steps >= ENGINE_SANDBOX_METER_STEPS) {
        unsigned n = m->steps;
        m->steps = 0;
        if (m->meter)
            m->meter->charge(m->L, n);
    }
}

static const char *match(matcher *m, const char *s, const char *p);

/* The end of the single-character class starting at p. */
static const char *class_end(matcher *m, const char *p)
{
    switch (*p++) {
    case ESC:
        if (p == m->p_end)
            luaL_error(m->L, "malformed pattern (ends with '%%')");
        return p + 1;
    case '[':
        if (*p == '^')
            p++;
        do { /* the first character is never the closing ']' */
            step(m);
            if (p == m->p_end)
                luaL_error(m->L, "malformed pattern (missing ']')");
            if (*(p++) == ESC && p < m->p_end)
                p++; /* an escaped character, ']' included */
        } while (*p != ']');
        return p + 1;
    default:
        return p;
    }
}

/* Whether c is in the class %cl (%a, %d, ...), or is cl for anything else. */
static int class_has(int c, int cl)
{
    int in;
    switch (tolower(cl)) {
    case 'a':
        in = isalpha(c);
        break;
    case 'c':
        in = iscntrl(c);
        break;
    case 'd':
        in = isdigit(c);
        break;
    case 'g':
        in = isgraph(c);
        break;
    case 'l':
        in = islower(c);
        break;
    case 'p':
        in = ispunct(c);
        break;
    case 's':
        in = isspace(c);
        break;
    case 'u':
        in = isupper(c);
        break;
    case 'w':
        in = isalnum(c);
        break;
    case 'x':
        in = isxdigit(c);
        break;
    case 'z': /* deprecated in Lua 5.2, still there in 5.4 */
        in = c == 0;
        break;
    default:
        return cl == c;
    }
    if (isupper(cl))
        return !in;
    return in != 0;
}

/* Whether c is in the set [...] that starts at p and closes at ec. */
static int set_has(matcher *m, int c, const char *p, const char *ec)
{
    int yes = 1;
    if (p[1] == '^') {
        yes = 0;
        p++;
    }
    while (++p < ec) {
        step(m);
        if (*p == ESC) {
            p++;
            if (class_has(c, (unsigned char)*p))
                return yes;
        } else if (p[1] == '-' && p + 2 < ec) {
            p += 2;
            if ((unsigned char)p[-2] <= c && c <= (unsigned char)*p)
                return yes;
        } else if ((unsigned char)*p == c) {
            return yes;
        }
    }
    return !yes;
}

/* Whether the character at s matches the class p..ep. */
static int single(matcher *m, const char *s, const char *p, const char *ep)
{
    if (s >= m->src_end)
        return 0;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.':
        return 1;
    case ESC:
        return class_has(c, (unsigned char)p[1]);
    case '[':
        return set_has(m, c, p, ep - 1);
    default:
        return (unsigned char)*p == c;
    }
}

/* %bxy at s, with p at x. */
static const char *balance(matcher *m, const char *s, const char *p)
{
    if (p >= m->p_end - 1)
        luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
    if (s >= m->src_end || *s != *p)
        return NULL;
    char open = p[0], close = p[1];
    int depth = 1;
    while (++s < m->src_end) {
        step(m);
        if (*s == close) {
            if (--depth == 0)
                return s + 1;
        } else if (*s == open) {
            depth++;
        }
    }
    return NULL;
}

/* p..ep repeated as often as it matches, then the rest, giving back one at a time. */
static const char *max_expand(matcher *m, const char *s, const char *p, const char *ep)
{
    ptrdiff_t i = 0;
    while (single(m, s + i, p, ep)) {
        step(m);
        i++;
    }
    for (; i >= 0; i--) {
        const char *r = match(m, s + i, ep + 1);
        if (r)
            return r;
    }
    return NULL;
}

/* The rest first, then one more p..ep, as few as possible. */
static const char *min_expand(matcher *m, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *r = match(m, s, ep + 1);
        if (r)
            return r;
        if (!single(m, s, p, ep))
            return NULL;
        s++;
    }
}

static const char *start_capture(matcher *m, const char *s, const char *p, ptrdiff_t what)
{
    int level = m->level;
    if (level >= MAX_CAPTURES)
        luaL_error(m->L, "too many captures");
    m->capture[level].init = s;
    m->capture[level].len = what;
    m->level = level + 1;
    const char *r = match(m, s, p);
    if (!r)
        m->level--;
    return r;
}

static const char *end_capture(matcher *m, const char *s, const char *p)
{
    int l = m->level - 1;
    while (l >= 0 && m->capture[l].len != CAP_UNFINISHED)
        l--;
    if (l < 0)
        luaL_error(m->L, "invalid pattern capture");
    m->capture[l].len = s - m->capture[l].init;
    const char *r = match(m, s, p);
    if (!r)
        m->capture[l].len = CAP_UNFINISHED;
    return r;
}

/* %1..%9 at s: the text of a closed capture again. */
static const char *back_reference(matcher *m, const char *s, int digit)
{
    int l = digit - '1';
    if (l < 0 || l >= m->level || m->capture[l].len == CAP_UNFINISHED)
        luaL_error(m->L, "invalid capture index %%%d", l + 1);
    size_t len = (size_t)m->capture[l].len; /* a position capture never matches */
    if ((size_t)(m->src_end - s) < len)
        return NULL;
    m->steps += (unsigned)(len / 64 < 1024 ? len / 64 : 1024);
    step(m);
    return memcmp(m->capture[l].init, s, len) == 0 ? s + len : NULL;
}

/* The end of the match of p at s, or NULL. */
static const char *match(matcher *m, const char *s, const char *p)
{
    /* An error unwinds past the m->depth++ below: whoever keeps a matcher
     * across calls (gmatch) sets depth afresh before each match. */
    if (m->depth <= 0)
        luaL_error(m->L, "pattern too complex");
    m->depth--;
    while (p != m->p_end) {
        step(m);
        switch (*p) {
        case '(':
            if (p[1] == ')')
                s = start_capture(m, s, p + 2, CAP_POSITION);
            else
                s = start_capture(m, s, p + 1, CAP_UNFINISHED);
            goto out;
        case ')':
            s = end_capture(m, s, p + 1);
            goto out;
        case '$':
            if (p + 1 != m->p_end)
                break; /* an ordinary character */
            s = s == m->src_end ? s : NULL;
            goto out;
        case ESC:
            if (p[1] == 'b') {
                s = balance(m, s, p + 2);
                if (!s)
                    goto out;
                p += 4;
                continue;
            }
            if (p[1] == 'f') {
                p += 2;
                if (*p != '[')
                    luaL_error(m->L, "missing '[' after '%%f' in pattern");
                const char *ep = class_end(m, p);
                int prev = s == m->src_init ? '\0' : (unsigned char)s[-1];
                int cur = (unsigned char)*s; /* '\0' at the subject's end */
                if (!set_has(m, prev, p, ep - 1) && set_has(m, cur, p, ep - 1)) {
                    p = ep;
                    continue;
                }
                s = NULL;
                goto out;
            }
            if (isdigit((unsigned char)p[1])) {
                s = back_reference(m, s, (unsigned char)p[1]);
                if (!s)
                    goto out;
                p += 2;
                continue;
            }
            break; /* an escaped class */
        default:
            break;
        }
        /* A single-character class, maybe with a quantifier. */
        const char *ep = class_end(m, p);
        if (!single(m, s, p, ep)) {
            if (*ep == '*' || *ep == '?' || *ep == '-') { /* zero times is fine */
                p = ep + 1;
                continue;
            }
            s = NULL;
            goto out;
        }
        switch (*ep) {
        case '?': {
            const char *r = match(m, s + 1, ep + 1);
            if (r) {
                s = r;
                goto out;
            }
            p = ep + 1;
            continue;
        }
        case '+':
            s = max_expand(m, s + 1, p, ep);
            goto out;
        case '*':
            s = max_expand(m, s, p, ep);
            goto out;
        case '-':
            s = min_expand(m, s, p, ep);
            goto out;
        default:
            s++;
            p = ep;
            continue;
        }
    }
out:
    m->depth++;
    return s;
}

static void prepare(matcher *m, lua_State *L, const char *s, size_t ls, const char *p, size_t lp)
{
    m->L = L;
    m->meter = lua_touserdata(L, lua_upvalueindex(1));
    m->steps = 0;
    m->depth = MAX_RECURSION;
    m->src_init = s;
    m->src_end = s + ls;
    m->p_end = p + lp;
    m->level = 0;
}

/*
 * Capture i of a match s..e: pushes a position capture and returns
 * CAP_POSITION, or points *cap at the text and returns its length. With no
 * captures, capture 0 is the whole match.
 */
static ptrdiff_t get_capture(matcher *m, int i, const char *s, const char *e, const char **cap)
{
    if (i >= m->level) {
        if (i != 0)
            luaL_error(m->L, "invalid capture index %%%d", i + 1);
        *cap = s;
        return e - s;
    }
    ptrdiff_t len = m->capture[i].len;
    *cap = m->capture[i].init;
    if (len == CAP_UNFINISHED)
        luaL_error(m->L, "unfinished capture");
    else if (len == CAP_POSITION)
        lua_pushinteger(m->L, (m->capture[i].init - m->src_init) + 1);
    return len;
}

static void push_capture(matcher *m, int i, const char *s, const char *e)
{
    const char *cap;
    ptrdiff_t len = get_capture(m, i, s, e, &cap);
    if (len != CAP_POSITION)
        lua_pushlstring(m->L, cap, (size_t)len);
}

/* Pushes the captures (the whole match s..e when there are none and s is set). */
static int push_captures(matcher *m, const char *s, const char *e)
{
    int n = (m->level == 0 && s) ? 1 : m->level;
    luaL_checkstack(m->L, n, "too many captures");
    for (int i = 0; i < n; i++)
        push_capture(m, i, s, e);
    return n;
}

/* Lua's posrelatI: a start position made absolute, at least 1. */
static size_t start_at(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return (size_t)pos;
    if (pos == 0 || pos < -(lua_Integer)len)
        return 1;
    return len + (size_t)pos + 1;
}

static int no_specials(const char *p, size_t lp)
{
    size_t upto = 0;
    do { /* strpbrk stops at zero bytes: look past each */
        if (strpbrk(p + upto, SPECIALS))
            return 0;
        upto += strlen(p + upto) + 1;
    } while (upto <= lp);
    return 1;
}

static int find_or_match(lua_State *L, int find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_at(luaL_optinteger(L, 3, 1), ls) - 1;
    if (init > ls) {
        lua_pushnil(L);
        return 1;
    }
    if (find && (lua_toboolean(L, 4) || no_specials(p, lp))) {
        /* memmem is linear in the subject, whatever the needle */
        const char *hit = memmem(s + init, ls - init, p, lp);
        if (hit) {
            lua_pushinteger(L, (hit - s) + 1);
            lua_pushinteger(L, (lua_Integer)((size_t)(hit - s) + lp));
            return 2;
        }
    } else {
        matcher m;
        const char *s1 = s + init;
        int anchor = *p == '^';
        if (anchor) {
            p++;
            lp--;
        }
        prepare(&m, L, s, ls, p, lp);
        do {
            m.level = 0;
            const char *e = match(&m, s1, p);
            if (e) {
                if (find) {
                    lua_pushinteger(L, (s1 - s) + 1);
                    lua_pushinteger(L, e - s);
                    return push_captures(&m, NULL, NULL) + 2;
                }
                return push_captures(&m, s1, e);
            }
        } while (s1++ < m.src_end && !anchor);
    }
    lua_pushnil(L);
    return 1;
}

static int l_find(lua_State *L)
{
    return find_or_match(L, 1);
}

static int l_match(lua_State *L)
{
    return find_or_match(L, 0);
}

typedef struct {
    matcher m;
    const char *src; /* where the next search starts */
    const char *p;
    const char *last; /* end of the last match, so an empty one is not found twice */
} gmatch_state;

static int gmatch_next(lua_State *L)
{
    gmatch_state *g = lua_touserdata(L, lua_upvalueindex(3));
    g->m.L = L; /* the iterator may run on another coroutine */
    for (const char *src = g->src; src <= g->m.src_end; src++) {
        /* From a sound state every time, as Lua's reprepstate: an earlier
         * call may have left by an error ("pattern too complex", a limit). */
        g->m.level = 0;
        g->m.depth = MAX_RECURSION;
        const char *e = match(&g->m, src, g->p);
        if (e && e != g->last) {
            g->src = g->last = e;
            return push_captures(&g->m, src, e);
        }
    }
    return 0;
}

static int l_gmatch(lua_State *L)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_at(luaL_optinteger(L, 3, 1), ls) - 1;
    const engine_sandbox_meter *meter = lua_touserdata(L, lua_upvalueindex(1));
    lua_settop(L, 2); /* the strings stay alive as upvalues of the iterator */
    gmatch_state *g = lua_newuserdatauv(L, sizeof *g, 0);
    if (init > ls)
        init = ls + 1; /* past the end: nothing to find */
    prepare(&g->m, L, s, ls, p, lp);
    g->m.meter = meter;
    g->src = s + init;
    g->p = p;
    g->last = NULL;
    lua_pushcclosure(L, gmatch_next, 3);
    return 1;
}

/* The replacement string (argument 3) for the match s..e, with %0..%9 and %%. */
static void add_string(matcher *m, luaL_Buffer *b, const char *s, const char *e)
{
    lua_State *L = m->L;
    size_t l;
    const char *news = lua_tolstring(L, 3, &l);
    const char *p;
    while ((p = memchr(news, ESC, l)) != NULL) {
        luaL_addlstring(b, news, (size_t)(p - news));
        p++; /* the character after '%' ('\0' past the end) */
        if (*p == ESC) {
            luaL_addchar(b, *p);
        } else if (*p == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
        } else if (isdigit((unsigned char)*p)) {
            const char *cap;
            ptrdiff_t len = get_capture(m, *p - '1', s, e, &cap);
            if (len == CAP_POSITION)
                luaL_addvalue(b);
            else
                luaL_addlstring(b, cap, (size_t)len);
        } else {
            luaL_error(L, "invalid use of '%c' in replacement string", ESC);
        }
        l -= (size_t)(p + 1 - news);
        news = p + 1;
    }
    luaL_addlstring(b, news, l);
}

/* Adds the replacement of s..e; returns whether the text changed. */
static int add_value(matcher *m, luaL_Buffer *b, const char *s, const char *e, int type)
{
    lua_State *L = m->L;
    switch (type) {
    case LUA_TFUNCTION: {
        lua_pushvalue(L, 3);
        int n = push_captures(m, s, e);
        lua_call(L, n, 1);
        break;
    }
    case LUA_TTABLE:
        push_capture(m, 0, s, e);
        lua_gettable(L, 3);
        break;
    default: /* a string or a number */
        add_string(m, b, s, e);
        return 1;
    }
    if (!lua_toboolean(L, -1)) { /* nil or false: keep the original text */
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
        return 0;
    }
    if (!lua_isstring(L, -1))
        return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    luaL_addvalue(b);
    return 1;
}

static int l_gsub(lua_State *L)
{
    size_t srcl, lp;
    const char *src = luaL_checklstring(L, 1, &srcl);
    const char *p = luaL_checklstring(L, 2, &lp);
    const char *last = NULL;
    int type = lua_type(L, 3);
    lua_Integer max_n = luaL_optinteger(L, 4, (lua_Integer)srcl + 1);
    int anchor = *p == '^';
    lua_Integer n = 0;
    int changed = 0;
    luaL_argexpected(L,
                     type == LUA_TNUMBER || type == LUA_TSTRING || type == LUA_TFUNCTION ||
                         type == LUA_TTABLE,
                     3, "string/function/table");
    matcher m;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (anchor) {
        p++;
        lp--;
    }
    prepare(&m, L, src, srcl, p, lp);
    while (n < max_n) {
        m.level = 0;
        const char *e = match(&m, src, p);
        if (e && e != last) {
            n++;
            changed = add_value(&m, &b, src, e, type) | changed;
            src = last = e;
        } else if (src < m.src_end) {
            luaL_addchar(&b, *src++);
        } else {
            break;
        }
        if (anchor)
            break;
    }
    if (!changed) {
        lua_pushvalue(L, 1); /* the very same string */
    } else {
        luaL_addlstring(&b, src, (size_t)(m.src_end - src));
        luaL_pushresult(&b);
    }
    lua_pushinteger(L, n);
    return 2;
}

void engine_pattern_open(lua_State *L, int strtab, const engine_sandbox_meter *meter)
{
    static const luaL_Reg funcs[] = {
        {"find", l_find}, {"match", l_match}, {"gmatch", l_gmatch}, {"gsub", l_gsub}};
    strtab = lua_absindex(L, strtab);
    for (size_t i = 0; i < sizeof funcs / sizeof funcs[0]; i++) {
        lua_pushlightuserdata(L, (void *)meter);
        lua_pushcclosure(L, funcs[i].func, 1);
        lua_setfield(L, strtab, funcs[i].name);
    }
}
