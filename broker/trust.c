/*
 * trust: the allow-lists and the ZAP handler of the broker (trust.h).
 * Each ZAP request is one hash lookup, answered at once: libzmq holds the
 * connection's handshake until the reply comes.
 */
#include "trust.h"

#include "ferry_log.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_FRAMES 8 /* version, id, domain, address, identity, mechanism, credentials */

const char *const broker_role_domain[BROKER_ROLE_COUNT] = {
    [BROKER_ROLE_CLIENT] = "clients",
    [BROKER_ROLE_ENGINE] = "engines",
    [BROKER_ROLE_WORKER] = "workers",
};

/* The role of the sockets in a ZAP domain: each role's own, and the engines'
 * commands socket. */
static const struct {
    const char *domain;
    broker_role role;
} domains[] = {
    {"clients", BROKER_ROLE_CLIENT},
    {"engines", BROKER_ROLE_ENGINE},
    {"commands", BROKER_ROLE_ENGINE},
    {"workers", BROKER_ROLE_WORKER},
};

static void free_keys(broker_key **keys)
{
    broker_key *k, *tmp;
    HASH_ITER(hh, *keys, k, tmp) {
        HASH_DEL(*keys, k);
        free(k);
    }
}

/* Reads the public certificates in dir into *out (owned by the caller).
 * Files that are not certificates are skipped with a warning. */
static ferry_err read_dir(const char *dir, broker_key **out, size_t *count, char *err,
                          size_t errlen)
{
    *out = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot read allow-list %s: %s", dir, strerror(errno));
        return FERRY_EIO;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[4096], why[512];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        ferry_cert cert;
        if (ferry_cert_load(path, &cert, why, sizeof why) != FERRY_OK) {
            ferry_warn("allow_list_skipped", "file=%s reason=\"%s\"", path, why);
            continue;
        }
        broker_key *k = calloc(1, sizeof *k);
        if (!k) {
            closedir(d);
            free_keys(out);
            snprintf(err, errlen, "out of memory reading %s", dir);
            return FERRY_ENOMEM;
        }
        (void)ferry_key_decode(cert.public_key, k->key);
        broker_key *old;
        HASH_FIND(hh, *out, k->key, sizeof k->key, old);
        if (old) {
            free(k);
            continue;
        }
        HASH_ADD(hh, *out, key, sizeof k->key, k);
        if (!FERRY_HASH_ADDED(k)) {
            free(k);
            closedir(d);
            free_keys(out);
            snprintf(err, errlen, "out of memory reading %s", dir);
            return FERRY_ENOMEM;
        }
        (*count)++;
    }
    closedir(d);
    return FERRY_OK;
}

/* Reads every role's folder; with strict, the first failure is returned and
 * nothing changes, else a role that fails keeps its list. */
static ferry_err load_all(broker_trust *t, int strict, char *err, size_t errlen)
{
    broker_key *fresh[BROKER_ROLE_COUNT] = {0};
    size_t n[BROKER_ROLE_COUNT] = {0};
    int ok[BROKER_ROLE_COUNT] = {0};
    for (int r = 0; r < BROKER_ROLE_COUNT; r++) {
        if (!t->dirs[r] || !*t->dirs[r]) {
            ok[r] = 1;
            continue;
        }
        ferry_err e = read_dir(t->dirs[r], &fresh[r], &n[r], err, errlen);
        if (e == FERRY_OK) {
            ok[r] = 1;
        } else if (strict) {
            for (int k = 0; k < r; k++)
                free_keys(&fresh[k]);
            return e;
        } else {
            ferry_error("allow_list_failed", "role=%s reason=\"%s\" kept=%zu",
                        broker_role_domain[r], err, t->nkeys[r]);
        }
    }
    for (int r = 0; r < BROKER_ROLE_COUNT; r++) {
        if (!ok[r])
            continue;
        free_keys(&t->keys[r]);
        t->keys[r] = fresh[r];
        t->nkeys[r] = n[r];
    }
    ferry_info("allow_lists", "clients=%zu engines=%zu workers=%zu", t->nkeys[BROKER_ROLE_CLIENT],
               t->nkeys[BROKER_ROLE_ENGINE], t->nkeys[BROKER_ROLE_WORKER]);
    return FERRY_OK;
}

ferry_err broker_trust_open(broker_trust *t, void *ctx, const char *const dirs[BROKER_ROLE_COUNT],
                            char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    for (int r = 0; r < BROKER_ROLE_COUNT; r++)
        t->dirs[r] = dirs[r];
    ferry_err e = load_all(t, 1, err, errlen);
    if (e)
        return e;
    t->zap = zmq_socket(ctx, ZMQ_REP);
    int linger = 0;
    if (!t->zap || zmq_setsockopt(t->zap, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_bind(t->zap, ZAP_ENDPOINT) != 0) {
        snprintf(err, errlen, "ZAP handler %s: %s", ZAP_ENDPOINT, zmq_strerror(zmq_errno()));
        broker_trust_close(t);
        return FERRY_EIO;
    }
    return FERRY_OK;
}

void broker_trust_reload(broker_trust *t)
{
    char err[512];
    (void)load_all(t, 0, err, sizeof err);
}

static int lookup(const broker_trust *t, broker_role role, const uint8_t key[32])
{
    broker_key *k;
    HASH_FIND(hh, t->keys[role], key, 32, k);
    return k != NULL;
}

int broker_trust_allows(const broker_trust *t, broker_role role, const char *key)
{
    uint8_t raw[32];
    return key && ferry_key_decode(key, raw) == FERRY_OK && lookup(t, role, raw);
}

const char *broker_trust_key(zmq_msg_t *msg)
{
    return zmq_msg_gets(msg, "User-Id");
}

/* Whether the request in frames (n of them) may pass; why says why not. */
static int admit(const broker_trust *t, zmq_msg_t *frames, int n, char *user, const char **why)
{
    *why = "bad request";
    if (n < 7 || zmq_msg_size(&frames[0]) != 3 || memcmp(zmq_msg_data(&frames[0]), "1.0", 3))
        return 0;
    if (zmq_msg_size(&frames[5]) != 5 || memcmp(zmq_msg_data(&frames[5]), "CURVE", 5)) {
        *why = "not CURVE";
        return 0;
    }
    if (zmq_msg_size(&frames[6]) != 32)
        return 0;
    const char *domain = zmq_msg_data(&frames[2]);
    size_t dlen = zmq_msg_size(&frames[2]);
    const uint8_t *key = zmq_msg_data(&frames[6]);
    zmq_z85_encode(user, key, 32);
    for (size_t i = 0; i < sizeof domains / sizeof domains[0]; i++) {
        if (strlen(domains[i].domain) != dlen || memcmp(domains[i].domain, domain, dlen))
            continue;
        *why = "key not on the allow-list of this role";
        return lookup(t, domains[i].role, key);
    }
    *why = "unknown domain";
    return 0;
}

/* Sends the reply frames; the request id is frames[1] of the request. */
static void reply(void *zap, zmq_msg_t *request_id, int ok, const char *text, const char *user)
{
    const char *code = ok ? "200" : "400";
    zmq_send(zap, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(zap, zmq_msg_data(request_id), zmq_msg_size(request_id), ZMQ_SNDMORE);
    zmq_send(zap, code, 3, ZMQ_SNDMORE);
    zmq_send(zap, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(zap, ok ? user : "", ok ? FERRY_KEY_Z85 : 0, ZMQ_SNDMORE);
    zmq_send(zap, "", 0, 0);
}

void broker_trust_serve(broker_trust *t)
{
    for (;;) {
        zmq_msg_t frames[ZAP_FRAMES], scratch;
        int n = 0, more = 1; /* frames received; those past ZAP_FRAMES are discarded */
        while (more) {
            zmq_msg_t *m = n < ZAP_FRAMES ? &frames[n] : &scratch;
            zmq_msg_init(m);
            if (zmq_msg_recv(m, t->zap, n ? 0 : ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(m);
                for (int i = 0; i < n && i < ZAP_FRAMES; i++)
                    zmq_msg_close(&frames[i]);
                return; /* nothing waiting (EAGAIN), or the context is ending */
            }
            more = zmq_msg_more(m);
            if (m == &scratch)
                zmq_msg_close(m);
            n++;
        }
        int kept = n < ZAP_FRAMES ? n : ZAP_FRAMES;
        char user[FERRY_KEY_Z85 + 1] = "";
        const char *why;
        int ok = n >= 2 && admit(t, frames, kept, user, &why);
        if (ok) {
            t->admitted++;
        } else {
            t->refused++;
            char addr[64] = "-";
            if (kept > 3)
                snprintf(addr, sizeof addr, "%.*s", (int)zmq_msg_size(&frames[3]),
                         (const char *)zmq_msg_data(&frames[3]));
            char domain[16] = "-";
            if (kept > 2)
                snprintf(domain, sizeof domain, "%.*s", (int)zmq_msg_size(&frames[2]),
                         (const char *)zmq_msg_data(&frames[2]));
            ferry_log_limited(&t->log_ms, &t->log_suppressed, FERRY_LOG_WARN, "peer_refused",
                              "socket=%s address=%s key=%s reason=\"%s\"", domain, addr,
                              user[0] ? user : "-", why);
        }
        if (n >= 2)
            reply(t->zap, &frames[1], ok, ok ? "OK" : why, user);
        else
            reply(t->zap, &frames[0], 0, "bad request", user);
        for (int i = 0; i < kept; i++)
            zmq_msg_close(&frames[i]);
    }
}

void broker_trust_close(broker_trust *t)
{
    for (int r = 0; r < BROKER_ROLE_COUNT; r++) {
        free_keys(&t->keys[r]);
        t->nkeys[r] = 0;
    }
    if (t->zap) {
        zmq_close(t->zap);
        t->zap = NULL;
    }
}
