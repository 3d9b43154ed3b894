/*
 * ferry: the command-line client.
 *
 *   ferry run [--broker EP] [--timeout S] [--json] script.lua [arg ...]
 *   ferry stats [--broker EP] [--json]
 *   ferry top [--broker EP] [--interval S] [--once] [--json]   (top.c)
 *   ferry keygen PATH
 *
 * run and stats take --curve-key FILE (this client's secret certificate) and
 * --broker-key FILE (the broker's public one) for a broker with CURVE keys,
 * and --max-msg BYTES (FERRY_MAX_MSG), the broker's message limit.
 *
 * Exit codes: 0 success, 1 the script failed, 2 bad usage, 3 the broker
 * cannot be reached or the timeout passed.
 */
#include "ferry/client.h"
#include "ferry_buf.h"
#include "ferry_cert.h"
#include "ferry_opts.h"
#include "ferry_value.h"
#include "ferry_wire.h"
#include "top.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EXIT_SCRIPT = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

static const char *broker = "tcp://localhost:5558";
static double timeout_s = 30;
static int json;
static double max_memory, max_instructions, max_output;
static const char *curve_key, *broker_key, *discover;
static long max_msg = FERRY_DEFAULT_MAX_MSG;

static const ferry_opt run_opts[] = {
    {"broker", "FERRY_CLIENTS", FERRY_OPT_STRING, &broker,
     "broker clients endpoint, or a comma-separated list of several brokers' (the script "
     "goes to the first in the list that is connected, passing over one that is down)",
     0, 0},
    {"discover", "FERRY_DISCOVER", FERRY_OPT_STRING, &discover,
     "a name whose every address is a broker (e.g. tasks.broker): used instead of --broker's "
     "hosts, on its port; resolved again every 3 s",
     0, 0},
    {"timeout", NULL, FERRY_OPT_DOUBLE, &timeout_s, "script deadline in seconds", 0.001, 86400},
    {"json", NULL, FERRY_OPT_FLAG, &json, "print one JSON object on stdout", 0, 0},
    {"curve-key", "FERRY_CURVE_KEY", FERRY_OPT_STRING, &curve_key,
     "this client's secret certificate (ferry keygen): CURVE towards the broker", 0, 0},
    {"broker-key", "FERRY_BROKER_KEY", FERRY_OPT_STRING, &broker_key,
     "the broker's public certificate (with --curve-key); several brokers: one for all, or a "
     "comma-separated list in the order of --broker",
     0, 0},
    {"max-msg", "FERRY_MAX_MSG", FERRY_OPT_INT, &max_msg,
     "largest message sent or taken in bytes (give it the broker's --max-msg)", 1, 1073741824},
    {"max-memory", NULL, FERRY_OPT_DOUBLE, &max_memory,
     "bytes the script's Lua state may hold (0: the engine's limit; never more)", 0, 1e15},
    {"max-instructions", NULL, FERRY_OPT_DOUBLE, &max_instructions,
     "instructions the script may run (0: the engine's limit; never more)", 0, 1e18},
    {"max-output", NULL, FERRY_OPT_DOUBLE, &max_output,
     "bytes of print output the script may make (0: the engine's limit; never more)", 0, 1e15},
};

static const ferry_cli run_cli = {
    .program = "ferry run",
    .synopsis = "[--broker EP] [--timeout S] [--json] [--max-msg B] [--max-memory B]\n"
                "       [--max-instructions N] [--max-output B] script.lua [arg ...]",
    .summary = "Runs script.lua (- for standard input) on a Ferry engine and prints what it\n"
               "printed and what it returned. The args reach the script as ferry.args.\n"
               "With several brokers (--broker A,B), a broker that is unreachable is passed\n"
               "over for the next; a script whose broker dies while it runs ends broker_lost\n"
               "(exit 3): it may or may not have run, so it is not sent again.",
    .opts = run_opts,
    .nopts = sizeof run_opts / sizeof run_opts[0],
    .positional = 1,
};

static const ferry_cli stats_cli = {
    .program = "ferry stats",
    .synopsis = "[--broker EP] [--json] [--max-msg B]",
    .summary = "Prints the broker's counters: engines, workers, functions, calls queued,\n"
               "in flight and completed, scripts. With several brokers, those of the first\n"
               "one connected.",
    .opts = run_opts, /* --broker, --discover, --timeout (bounds the wait), --json, the keys,
                       * --max-msg */
    .nopts = 7,
};

/* The client of --broker's list, or of --discover's name on --broker's port. */
static ferry_client *open_client(char *err, size_t errlen)
{
    if (discover && *discover)
        return ferry_client_new_discover(discover, broker, curve_key, broker_key, err, errlen);
    return ferry_client_new_curve(broker, curve_key, broker_key, err, errlen);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: ferry run [--broker EP] [--timeout S] [--json] script.lua [arg ...]\n"
                 "       ferry stats [--broker EP] [--json]\n"
                 "       ferry top [--broker EP] [--interval S] [--once] [--json]\n"
                 "       ferry keygen PATH   (writes PATH and PATH_secret)\n"
                 "       ferry --help | --version\n");
}

static int read_file(const char *path, ferry_buf *out)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f)
        return -1;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (ferry_buf_append(out, chunk, n) != FERRY_OK)
            break;
    int bad = ferror(f);
    if (f != stdin)
        fclose(f);
    return bad ? -1 : 0;
}

static void print_human(const Ferry__Result *r)
{
    if (r->output.len)
        fwrite(r->output.data, 1, r->output.len, stdout);
    for (size_t i = 0; i < r->n_values; i++) {
        const Ferry__Value *v = r->values[i];
        if (i)
            fputc('\t', stdout);
        if (v->kind_case == FERRY__VALUE__KIND_STRING) {
            fwrite(v->string.data, 1, v->string.len, stdout);
        } else {
            ferry_buf b = FERRY_BUF_INIT;
            ferry_value_to_json(v, &b);
            fwrite(b.data, 1, b.len, stdout);
            ferry_buf_fini(&b);
        }
    }
    if (r->n_values)
        fputc('\n', stdout);
    fflush(stdout);
}

/* {"ok": bool, "values": [...], "output": "...", "error": {...} | null} */
static void print_json(int ok, const Ferry__Result *r, const char *code, const char *message)
{
    ferry_buf b = FERRY_BUF_INIT;
    ferry_buf_printf(&b, "{\"ok\": %s, \"values\": [", ok ? "true" : "false");
    for (size_t i = 0; r && i < r->n_values; i++) {
        if (i)
            ferry_buf_puts(&b, ", ");
        ferry_value_to_json(r->values[i], &b);
    }
    ferry_buf_puts(&b, "], \"output\": ");
    if (r)
        ferry_json_string(&b, r->output.data, r->output.len);
    else
        ferry_buf_puts(&b, "\"\"");
    ferry_buf_puts(&b, ", \"error\": ");
    if (ok) {
        ferry_buf_puts(&b, "null");
    } else {
        ferry_buf_puts(&b, "{\"code\": ");
        ferry_json_string(&b, code, strlen(code));
        ferry_buf_puts(&b, ", \"message\": ");
        ferry_json_string(&b, message, strlen(message));
        ferry_buf_puts(&b, "}");
    }
    ferry_buf_puts(&b, "}\n");
    fwrite(b.data, 1, b.len, stdout);
    fflush(stdout);
    ferry_buf_fini(&b);
}

/* Reports a failure that happened before any result, in the chosen format. */
static int fail(int code, ferry_err err, const char *message)
{
    if (json)
        print_json(0, NULL, ferry_err_code(err), message);
    fprintf(stderr, "ferry: %s: %s\n", ferry_err_code(err), message);
    return code;
}

static int cmd_run(int argc, char **argv)
{
    int next;
    int rc = ferry_opts_parse(&run_cli, argc, argv, 2, &next);
    if (rc != FERRY_OPTS_CONTINUE)
        return rc;
    if (next >= argc) {
        fprintf(stderr, "ferry run: missing script (see --help)\n");
        return EXIT_USAGE;
    }
    const char *path = argv[next];
    ferry_buf src = FERRY_BUF_INIT;
    if (read_file(path, &src) != 0) {
        fprintf(stderr, "ferry run: cannot read %s: %s\n", path, strerror(errno));
        ferry_buf_fini(&src);
        return EXIT_USAGE;
    }
    int nargs = argc - next - 1;
    Ferry__Value **args = calloc((size_t)(nargs > 0 ? nargs : 1), sizeof *args);
    for (int i = 0; args && i < nargs; i++)
        args[i] = ferry_value_cstring(argv[next + 1 + i]);
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;

    char errbuf[512];
    int code = EXIT_UNREACHABLE;
    ferry_client *c = open_client(errbuf, sizeof errbuf);
    if (!c || ferry_client_set_max_msg(c, max_msg, errbuf, sizeof errbuf) != FERRY_OK) {
        code = fail(EXIT_UNREACHABLE, FERRY_EUNREACHABLE, errbuf);
        goto out;
    }
    ferry_limits limits = {.max_memory = (uint64_t)max_memory,
                           .max_instructions = (uint64_t)max_instructions,
                           .max_output = (uint64_t)max_output};
    ferry_client_set_limits(c, &limits);
    ferry_result res;
    ferry_err err = ferry_client_run(c, src.data ? src.data : "", src.len, name, args,
                                     (size_t)nargs, (uint32_t)(timeout_s * 1000), &res);
    if (err == FERRY_ELIMIT) {
        snprintf(errbuf, sizeof errbuf, "the script and its arguments make a Submit over the "
                 "%ld-byte message limit (--max-msg)", max_msg);
        code = fail(EXIT_SCRIPT, err, errbuf);
    } else if (err == FERRY_EUNREACHABLE) {
        snprintf(errbuf, sizeof errbuf, "cannot reach the broker at %s", broker);
        code = fail(EXIT_UNREACHABLE, err, errbuf);
    } else if (err == FERRY_EAUTH) {
        snprintf(errbuf, sizeof errbuf, "not authorized by the broker at %s", broker);
        code = fail(EXIT_UNREACHABLE, err, errbuf);
    } else if (err == FERRY_EBROKER_LOST) {
        snprintf(errbuf, sizeof errbuf, "the broker at %s went away while the script ran",
                 broker);
        code = fail(EXIT_UNREACHABLE, err, errbuf);
    } else if (err == FERRY_ETIMEOUT) {
        snprintf(errbuf, sizeof errbuf, "no answer from the broker at %s within %gs", broker,
                 timeout_s + FERRY_CLIENT_GRACE_MS / 1000.0);
        code = fail(EXIT_UNREACHABLE, err, errbuf);
    } else if (err != FERRY_OK) {
        code = fail(EXIT_UNREACHABLE, err, ferry_err_desc(err));
    } else {
        const Ferry__Result *r = res.result;
        const char *ecode = r->error && r->error->code[0] ? r->error->code : "script_error";
        const char *emsg = r->error ? r->error->message : "the script failed";
        if (json)
            print_json(r->ok, r, ecode, emsg);
        else
            print_human(r);
        if (r->ok) {
            code = 0;
        } else {
            fprintf(stderr, "ferry: %s: %s\n", ecode, emsg);
            code = strcmp(ecode, "timeout") == 0 ? EXIT_UNREACHABLE : EXIT_SCRIPT;
        }
        ferry_result_fini(&res);
    }
out:
    ferry_client_destroy(&c);
    if (args)
        ferry_values_free(args, (size_t)nargs);
    ferry_buf_fini(&src);
    return code;
}

/* A routing id as text: printable ASCII kept, anything else as '?' (ids are bytes). */
static void id_text(const ProtobufCBinaryData *id, char *out, size_t outlen)
{
    size_t n = id->len < outlen - 1 ? id->len : outlen - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = id->data[i] >= 0x20 && id->data[i] < 0x7f ? (char)id->data[i] : '?';
    out[n] = '\0';
}

/* Appends "worker_list": [...] for --json. */
static void json_workers(ferry_buf *b, const Ferry__Stats *s)
{
    ferry_buf_puts(b, "\"worker_list\": [");
    for (size_t i = 0; i < s->n_worker_list; i++) {
        const Ferry__WorkerStats *w = s->worker_list[i];
        ferry_buf_puts(b, i ? ", {\"id\": " : "{\"id\": ");
        ferry_json_string(b, w->id.data, w->id.len);
        ferry_buf_puts(b, ", \"functions\": [");
        for (size_t k = 0; k < w->n_functions; k++) {
            if (k)
                ferry_buf_puts(b, ", ");
            ferry_json_string(b, w->functions[k], strlen(w->functions[k]));
        }
        ferry_buf_printf(b,
                         "], \"credit\": %u, \"in_flight\": %u, \"completed\": %llu,"
                         " \"failed\": %llu, \"leaving\": %s}",
                         w->credit, w->in_flight, (unsigned long long)w->completed,
                         (unsigned long long)w->failed, w->leaving ? "true" : "false");
    }
    ferry_buf_puts(b, "]");
}

static void print_workers(const Ferry__Stats *s)
{
    if (s->n_worker_list)
        printf("\n%-32s %7s %9s %10s %8s  %s\n", "worker", "credit", "in_flight", "completed",
               "failed", "functions");
    for (size_t i = 0; i < s->n_worker_list; i++) {
        const Ferry__WorkerStats *w = s->worker_list[i];
        char id[256];
        id_text(&w->id, id, sizeof id);
        printf("%-32s %7u %9u %10llu %8llu  ", id, w->credit, w->in_flight,
               (unsigned long long)w->completed, (unsigned long long)w->failed);
        for (size_t k = 0; k < w->n_functions; k++)
            printf("%s%s", k ? ", " : "", w->functions[k]);
        printf("%s\n", w->leaving ? " (leaving)" : "");
    }
}

static void print_stats(const Ferry__Stats *s)
{
    if (json) {
        ferry_buf b = FERRY_BUF_INIT;
        ferry_buf_printf(&b,
                         "{\"engines\": %u, \"workers\": %u, \"queued\": %llu, \"in_flight\": %llu,"
                         " \"completed\": %llu, \"scripts_queued\": %llu, \"scripts_running\": %llu,"
                         " \"scripts_completed\": %llu, \"dropped\": %llu, \"functions\": {",
                         s->engines, s->workers, (unsigned long long)s->queued,
                         (unsigned long long)s->in_flight, (unsigned long long)s->completed,
                         (unsigned long long)s->scripts_queued,
                         (unsigned long long)s->scripts_running,
                         (unsigned long long)s->scripts_completed, (unsigned long long)s->dropped);
        for (size_t i = 0; i < s->n_functions; i++) {
            const Ferry__FunctionStats *f = s->functions[i];
            if (i)
                ferry_buf_puts(&b, ", ");
            ferry_json_string(&b, f->name, strlen(f->name));
            ferry_buf_printf(&b,
                             ": {\"workers\": %u, \"queued\": %llu, \"in_flight\": %llu,"
                             " \"completed\": %llu, \"failed\": %llu}",
                             f->workers, (unsigned long long)f->queued,
                             (unsigned long long)f->in_flight, (unsigned long long)f->completed,
                             (unsigned long long)f->failed);
        }
        ferry_buf_puts(&b, "}, ");
        json_workers(&b, s);
        ferry_buf_printf(&b,
                         ", \"slots\": %llu, \"free_slots\": %llu, \"credit\": %llu, "
                         "\"free_credit\": %llu, \"engine_list\": [",
                         (unsigned long long)s->slots, (unsigned long long)s->free_slots,
                         (unsigned long long)s->credit, (unsigned long long)s->free_credit);
        for (size_t i = 0; i < s->n_engine_list; i++) {
            const Ferry__EngineStats *e = s->engine_list[i];
            ferry_buf_puts(&b, i ? ", {\"id\": " : "{\"id\": ");
            ferry_json_string(&b, e->id.data, e->id.len);
            ferry_buf_printf(&b, ", \"slots\": %u, \"running\": %u, \"leaving\": %s}",
                             e->slots, e->running, e->leaving ? "true" : "false");
        }
        ferry_buf_printf(&b, "], \"truncated\": %s}\n", s->truncated ? "true" : "false");
        fwrite(b.data, 1, b.len, stdout);
        ferry_buf_fini(&b);
        return;
    }
    printf("engines            %u\nworkers            %u\n", s->engines, s->workers);
    printf("calls queued       %llu\ncalls in flight    %llu\ncalls completed    %llu\n",
           (unsigned long long)s->queued, (unsigned long long)s->in_flight,
           (unsigned long long)s->completed);
    printf("scripts queued     %llu\nscripts running    %llu\nscripts completed  %llu\n",
           (unsigned long long)s->scripts_queued, (unsigned long long)s->scripts_running,
           (unsigned long long)s->scripts_completed);
    printf("messages dropped   %llu\n", (unsigned long long)s->dropped);
    printf("slots free         %llu of %llu\ncredit free        %llu of %llu\n",
           (unsigned long long)s->free_slots, (unsigned long long)s->slots,
           (unsigned long long)s->free_credit, (unsigned long long)s->credit);
    if (s->n_functions)
        printf("\n%-24s %8s %8s %10s %10s %8s\n", "function", "workers", "queued", "in_flight",
               "completed", "failed");
    for (size_t i = 0; i < s->n_functions; i++) {
        const Ferry__FunctionStats *f = s->functions[i];
        printf("%-24s %8u %8llu %10llu %10llu %8llu\n", f->name, f->workers,
               (unsigned long long)f->queued, (unsigned long long)f->in_flight,
               (unsigned long long)f->completed, (unsigned long long)f->failed);
    }
    print_workers(s);
    if (s->truncated)
        printf("\n(lists cut to keep the reply small)\n");
}

static int cmd_stats(int argc, char **argv)
{
    int next;
    timeout_s = 5;
    int rc = ferry_opts_parse(&stats_cli, argc, argv, 2, &next);
    if (rc != FERRY_OPTS_CONTINUE)
        return rc;
    char errbuf[512];
    ferry_client *c = open_client(errbuf, sizeof errbuf);
    if (c && ferry_client_set_max_msg(c, max_msg, errbuf, sizeof errbuf) != FERRY_OK)
        ferry_client_destroy(&c);
    if (!c)
        return fail(EXIT_UNREACHABLE, FERRY_EUNREACHABLE, errbuf);
    ferry_client_set_connect_timeout(c, (int)(timeout_s * 1000));
    Ferry__Envelope *env = NULL;
    ferry_err err = ferry_client_stats(c, (int)(timeout_s * 1000), &env);
    int code = 0;
    if (err == FERRY_EAUTH) {
        snprintf(errbuf, sizeof errbuf, "not authorized by the broker at %s", broker);
        fprintf(stderr, "ferry: %s: %s\n", ferry_err_code(err), errbuf);
        code = EXIT_UNREACHABLE;
    } else if (err != FERRY_OK) {
        snprintf(errbuf, sizeof errbuf, "no stats from the broker at %s: %s", broker,
                 ferry_err_desc(err));
        fprintf(stderr, "ferry: %s: %s\n", ferry_err_code(err), errbuf);
        code = EXIT_UNREACHABLE;
    } else {
        print_stats(env->stats);
    }
    ferry_envelope_free(env);
    ferry_client_destroy(&c);
    return code;
}

/* ferry keygen PATH: a new key pair into PATH and PATH_secret (mode 0600). */
static int cmd_keygen(int argc, char **argv)
{
    if (argc != 3 || argv[2][0] == '-') {
        fprintf(stderr, "usage: ferry keygen PATH   (writes PATH and PATH_secret)\n");
        return EXIT_USAGE;
    }
    ferry_cert cert;
    if (ferry_cert_generate(&cert) != FERRY_OK) {
        fprintf(stderr, "ferry keygen: this libzmq has no CURVE support\n");
        return 1;
    }
    char err[512];
    if (ferry_cert_save(argv[2], &cert, err, sizeof err) != FERRY_OK) {
        fprintf(stderr, "ferry keygen: %s\n", err);
        return 1;
    }
    printf("%s\n", cert.public_key);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "run") == 0)
        return cmd_run(argc, argv);
    if (strcmp(argv[1], "stats") == 0)
        return cmd_stats(argc, argv);
    if (strcmp(argv[1], "top") == 0)
        return client_top_main(argc, argv);
    if (strcmp(argv[1], "keygen") == 0)
        return cmd_keygen(argc, argv);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("ferry %s\n", FERRY_VERSION);
        return 0;
    }
    fprintf(stderr, "ferry: unknown command '%s' (see ferry --help)\n", argv[1]);
    return EXIT_USAGE;
}
