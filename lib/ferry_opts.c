/* ferry_opts: table-driven flag and environment parsing. */
#include "ferry_opts.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int set_value(const ferry_cli *cli, const ferry_opt *o, const char *text, const char *from)
{
    char *end;
    switch (o->type) {
    case FERRY_OPT_STRING:
        *(const char **)o->value = text;
        return 0;
    case FERRY_OPT_FLAG:
        *(int *)o->value = 1;
        return 0;
    case FERRY_OPT_INT: {
        errno = 0;
        long v = strtol(text, &end, 10);
        if (errno || end == text || *end || ((o->min || o->max) && (v < o->min || v > o->max))) {
            if (o->min || o->max)
                fprintf(stderr, "%s: %s: '%s' is not a whole number from %.0f to %.0f\n",
                        cli->program, from, text, o->min, o->max);
            else
                fprintf(stderr, "%s: %s: '%s' is not a whole number\n", cli->program, from, text);
            return 2;
        }
        *(long *)o->value = v;
        return 0;
    }
    case FERRY_OPT_DOUBLE: {
        errno = 0;
        double v = strtod(text, &end);
        if (errno || end == text || *end || !isfinite(v) ||
            ((o->min || o->max) && (v < o->min || v > o->max))) {
            fprintf(stderr, "%s: %s: '%s' is not a number from %g to %g\n", cli->program, from,
                    text, o->min, o->max);
            return 2;
        }
        *(double *)o->value = v;
        return 0;
    }
    }
    return 2;
}

void ferry_opts_help(const ferry_cli *cli)
{
    printf("usage: %s %s\n\n%s\n\noptions:\n", cli->program, cli->synopsis, cli->summary);
    for (size_t i = 0; i < cli->nopts; i++) {
        const ferry_opt *o = &cli->opts[i];
        char left[64];
        snprintf(left, sizeof left, "--%s%s", o->name,
                 o->type == FERRY_OPT_FLAG ? "" : (o->type == FERRY_OPT_STRING ? " S" : " N"));
        printf("  %-22s %s", left, o->help);
        if (o->type == FERRY_OPT_STRING && *(const char **)o->value)
            printf(" (default %s)", *(const char **)o->value);
        else if (o->type == FERRY_OPT_INT)
            printf(" (default %ld)", *(long *)o->value);
        else if (o->type == FERRY_OPT_DOUBLE)
            printf(" (default %g)", *(double *)o->value);
        if (o->env)
            printf(" [env %s]", o->env);
        printf("\n");
    }
    printf("  %-22s %s\n  %-22s %s\n", "--help", "print this help and exit", "--version",
           "print the version and exit");
}

int ferry_opts_parse(const ferry_cli *cli, int argc, char **argv, int start, int *next)
{
    for (size_t i = 0; i < cli->nopts; i++) {
        const ferry_opt *o = &cli->opts[i];
        const char *env = o->env ? getenv(o->env) : NULL;
        if (env && *env) {
            int rc = set_value(cli, o, env, o->env);
            if (rc)
                return rc;
        }
    }
    int i = start;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (cli->positional)
                break;
            fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", cli->program, a);
            return 2;
        }
        if (strcmp(a, "--help") == 0) {
            ferry_opts_help(cli);
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            printf("%s %s\n", cli->program, FERRY_VERSION);
            return 0;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const ferry_opt *o = NULL;
        for (size_t k = 0; k < cli->nopts; k++)
            if (strlen(cli->opts[k].name) == nlen && strncmp(cli->opts[k].name, name, nlen) == 0)
                o = &cli->opts[k];
        if (!o) {
            fprintf(stderr, "%s: unknown option '%.*s' (see --help)\n", cli->program,
                    (int)nlen + 2, a);
            return 2;
        }
        const char *val = NULL;
        if (o->type == FERRY_OPT_FLAG) {
            if (eq) {
                fprintf(stderr, "%s: option '--%s' takes no value\n", cli->program, o->name);
                return 2;
            }
        } else if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            fprintf(stderr, "%s: option '--%s' needs a value\n", cli->program, o->name);
            return 2;
        }
        char from[80];
        snprintf(from, sizeof from, "--%s", o->name);
        int rc = set_value(cli, o, val, from);
        if (rc)
            return rc;
    }
    *next = i;
    return FERRY_OPTS_CONTINUE;
}
