/*
 * ferry_opts: command-line flags with environment fallbacks, from one table.
 *
 * Each option may be given as --name VALUE or --name=VALUE, or through its
 * environment variable; the flag wins over the environment, which wins over
 * the default already stored in *value. --help and --version are built in.
 */
#ifndef FERRY_OPTS_H
#define FERRY_OPTS_H

#include <stddef.h>

#ifndef FERRY_VERSION
#define FERRY_VERSION "0.0.0"
#endif

typedef enum {
    FERRY_OPT_STRING, /* value: const char ** (points into argv or environ) */
    FERRY_OPT_INT,    /* value: long *; bounded by min and max */
    FERRY_OPT_DOUBLE, /* value: double *; bounded by min and max */
    FERRY_OPT_FLAG,   /* value: int *; set to 1, takes no argument */
} ferry_opt_type;

typedef struct {
    const char *name; /* without the dashes */
    const char *env;  /* environment variable, or NULL */
    ferry_opt_type type;
    void *value;
    const char *help;
    double min, max; /* for numbers; ignored when both are 0 */
} ferry_opt;

typedef struct {
    const char *program;  /* "ferry-broker" */
    const char *synopsis; /* after the program name in the usage line, e.g. "[options]" */
    const char *summary;  /* one paragraph for --help */
    const ferry_opt *opts;
    size_t nopts;
    int positional; /* stop at the first non-option argument (else it is an error) */
} ferry_cli;

#define FERRY_OPTS_CONTINUE (-1)

/*
 * Parses argv[start..] against cli. Returns FERRY_OPTS_CONTINUE with
 * *next set to the first argument not consumed, 0 after printing --help or
 * --version (the caller exits 0), or 2 after printing a one-line error to
 * stderr (the caller exits 2).
 */
int ferry_opts_parse(const ferry_cli *cli, int argc, char **argv, int start, int *next);

/* Prints the --help text of cli to stdout. */
void ferry_opts_help(const ferry_cli *cli);

#endif
