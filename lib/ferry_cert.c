/*
 * ferry_cert: zcert files (a small ZPL reader and writer) and the loading of
 * a process's CURVE settings. Only what a zcert holds is read: the `curve`
 * section's public-key and secret-key; metadata is skipped.
 */
#include "ferry_cert.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define CERT_FILE_MAX 65536 /* a zcert is a few hundred bytes; anything larger is not one */

ferry_err ferry_cert_generate(ferry_cert *cert)
{
    memset(cert, 0, sizeof *cert);
    if (zmq_curve_keypair(cert->public_key, cert->secret_key) != 0)
        return FERRY_EIO;
    return FERRY_OK;
}

ferry_err ferry_key_decode(const char *z85, uint8_t out[32])
{
    if (!z85 || strlen(z85) != FERRY_KEY_Z85 || !zmq_z85_decode(out, z85))
        return FERRY_EPROTO;
    return FERRY_OK;
}

/* The value of a ZPL `name = value` line: quoted ("..." or '...') or bare up
 * to a comment or the end. Copies at most outlen - 1 bytes; 0, or -1 when
 * the value does not fit or a quote is not closed. */
static int zpl_value(const char *p, char *out, size_t outlen)
{
    while (*p == ' ' || *p == '\t')
        p++;
    const char *end;
    if (*p == '"' || *p == '\'') {
        end = strchr(p + 1, *p);
        if (!end)
            return -1;
        p++;
    } else {
        end = p + strcspn(p, " \t#");
    }
    size_t n = (size_t)(end - p);
    if (n >= outlen)
        return -1;
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

/* Reads the keys of the `curve` section of a ZPL text into cert. */
static void zpl_keys(char *text, ferry_cert *cert)
{
    int in_curve = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        line[strcspn(line, "\r")] = '\0';
        size_t indent = strspn(line, " ");
        char *p = line + indent;
        if (*p == '\0' || *p == '#')
            continue;
        if (indent == 0) {
            size_t n = strcspn(p, " =\t");
            in_curve = n == 5 && strncmp(p, "curve", 5) == 0;
            continue;
        }
        if (!in_curve)
            continue;
        size_t n = strcspn(p, " =\t");
        char *eq = strchr(p + n, '=');
        if (!eq)
            continue;
        char *field = NULL;
        if (n == 10 && strncmp(p, "public-key", 10) == 0)
            field = cert->public_key;
        else if (n == 10 && strncmp(p, "secret-key", 10) == 0)
            field = cert->secret_key;
        if (field && zpl_value(eq + 1, field, FERRY_KEY_Z85 + 1) != 0)
            field[0] = '\0';
    }
}

ferry_err ferry_cert_load(const char *path, ferry_cert *cert, char *err, size_t errlen)
{
    memset(cert, 0, sizeof *cert);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read certificate %s: %s", path, strerror(errno));
        return FERRY_EIO;
    }
    char *text = malloc(CERT_FILE_MAX + 1);
    if (!text) {
        fclose(f);
        snprintf(err, errlen, "out of memory reading %s", path);
        return FERRY_ENOMEM;
    }
    size_t n = fread(text, 1, CERT_FILE_MAX + 1, f);
    int failed = ferror(f);
    fclose(f);
    if (failed || n > CERT_FILE_MAX) {
        free(text);
        snprintf(err, errlen, "cannot read certificate %s: %s", path,
                 failed ? "read error" : "larger than a certificate");
        return FERRY_EIO;
    }
    text[n] = '\0';
    zpl_keys(text, cert);
    free(text);
    uint8_t raw[32];
    if (ferry_key_decode(cert->public_key, raw) != FERRY_OK) {
        snprintf(err, errlen, "%s is not a CURVE certificate (no valid curve/public-key)", path);
        return FERRY_EPROTO;
    }
    if (cert->secret_key[0] && ferry_key_decode(cert->secret_key, raw) != FERRY_OK) {
        snprintf(err, errlen, "%s: curve/secret-key is not a 40-character Z85 key", path);
        return FERRY_EPROTO;
    }
    return FERRY_OK;
}

/* Writes one certificate file, created with mode (never replacing one). */
static ferry_err write_cert(const char *path, const ferry_cert *cert, int secret, char *err,
                            size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, secret ? 0600 : 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return FERRY_EIO;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return FERRY_EIO;
    }
    char when[32] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm))
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    fprintf(f, "#   ****  Generated on %s by ferry keygen  ****\n", when);
    if (secret)
        fprintf(f, "#   ZeroMQ CURVE **Secret** Certificate\n"
                   "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\n");
    else
        fprintf(f, "#   ZeroMQ CURVE Public Certificate\n"
                   "#   Exchange securely, or use a secure mechanism to verify the contents\n"
                   "#   of this file after exchange.\n\n");
    fprintf(f, "metadata\ncurve\n    public-key = \"%s\"\n", cert->public_key);
    if (secret)
        fprintf(f, "    secret-key = \"%s\"\n", cert->secret_key);
    if (fclose(f) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return FERRY_EIO;
    }
    return FERRY_OK;
}

ferry_err ferry_cert_save(const char *path, const ferry_cert *cert, char *err, size_t errlen)
{
    char secret[4096];
    if (snprintf(secret, sizeof secret, "%s_secret", path) >= (int)sizeof secret) {
        snprintf(err, errlen, "path too long: %s", path);
        return FERRY_EUSAGE;
    }
    /* The secret first: a failure leaves no public half without its secret. */
    ferry_err e = write_cert(secret, cert, 1, err, errlen);
    if (e)
        return e;
    e = write_cert(path, cert, 0, err, errlen);
    if (e)
        unlink(secret);
    return e;
}

ferry_err ferry_curve_server(ferry_curve *curve, const char *own_path, char *err, size_t errlen)
{
    memset(curve, 0, sizeof *curve);
    if (!own_path || !*own_path)
        return FERRY_OK;
    ferry_err e = ferry_cert_load(own_path, &curve->own, err, errlen);
    if (e == FERRY_OK && !curve->own.secret_key[0]) {
        /* Given the public half: its secret is beside it, as zmakecert writes them. */
        char secret[4096];
        snprintf(secret, sizeof secret, "%s_secret", own_path);
        e = ferry_cert_load(secret, &curve->own, err, errlen);
        if (e == FERRY_OK && !curve->own.secret_key[0]) {
            snprintf(err, errlen,
                     "%s holds no curve/secret-key (--curve-key wants the "
                     "secret certificate)",
                     secret);
            e = FERRY_EUSAGE;
        }
    }
    if (e)
        return e;
    curve->on = 1;
    return FERRY_OK;
}

ferry_err ferry_curve_client(ferry_curve *curve, const char *own_path, const char *server_path,
                             char *err, size_t errlen)
{
    int own = own_path && *own_path, server = server_path && *server_path;
    memset(curve, 0, sizeof *curve);
    if (!own && !server)
        return FERRY_OK;
    if (own != server) {
        snprintf(err, errlen, "--curve-key and --broker-key go together (given: %s only)",
                 own ? "--curve-key" : "--broker-key");
        return FERRY_EUSAGE;
    }
    ferry_err e = ferry_curve_server(curve, own_path, err, errlen);
    if (e)
        return e;
    ferry_cert broker;
    e = ferry_cert_load(server_path, &broker, err, errlen);
    if (e) {
        memset(curve, 0, sizeof *curve);
        return e;
    }
    memcpy(curve->server_key, broker.public_key, sizeof curve->server_key);
    return FERRY_OK;
}
