/*
 * trust: who may connect to the broker, and in which role.
 *
 * With --curve-key every broker socket is a CURVE server (RFC 26) whose
 * ZMQ_ZAP_DOMAIN names the role it serves ("clients", "engines",
 * "commands", "workers"). libzmq asks the ZAP handler (RFC 27) about each
 * new connection; this module is that handler: a REP socket on
 * inproc://zeromq.zap.01, served from the broker's loop, that admits a
 * public key only in the roles whose allow-list folder holds its
 * certificate (commands is the engines' role). The reply's user id is the
 * key in Z85, so every message received afterwards carries it as its
 * "User-Id" property (broker_trust_key).
 *
 * The allow-lists are folders of public certificates (ferry_cert.h), read
 * at start and again by broker_trust_reload (SIGHUP). A reload that cannot
 * read a folder keeps that role's previous list.
 *
 * Who may call: one thread (the broker loop).
 */
#ifndef BROKER_TRUST_H
#define BROKER_TRUST_H

#include "ferry_cert.h"
#include "ferry_err.h"
#include "ferry_hash.h"

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

typedef enum {
    BROKER_ROLE_CLIENT,
    BROKER_ROLE_ENGINE,
    BROKER_ROLE_WORKER,
    BROKER_ROLE_COUNT
} broker_role;

typedef struct broker_key {
    UT_hash_handle hh;
    uint8_t key[32];
} broker_key;

typedef struct {
    const char *dirs[BROKER_ROLE_COUNT]; /* allow-list folders (borrowed); NULL: nobody */
    broker_key *keys[BROKER_ROLE_COUNT]; /* owned: the keys each role admits */
    size_t nkeys[BROKER_ROLE_COUNT];
    void *zap;                  /* REP on inproc://zeromq.zap.01, or NULL */
    uint64_t admitted, refused; /* ZAP answers given */
    int64_t log_ms;             /* the peer_refused log line's rate limit */
    uint64_t log_suppressed;
} broker_trust;

/* The ZAP domain of each role's sockets ("clients", "engines", "workers"). */
extern const char *const broker_role_domain[BROKER_ROLE_COUNT];

/*
 * Reads the allow-lists of dirs and binds the ZAP socket on ctx (before any
 * CURVE socket is bound). On failure a message in err, nothing held.
 */
ferry_err broker_trust_open(broker_trust *t, void *ctx, const char *const dirs[BROKER_ROLE_COUNT],
                            char *err, size_t errlen);

/* Reads every allow-list again (SIGHUP); logs what each role admits now. */
void broker_trust_reload(broker_trust *t);

/* Answers the ZAP requests waiting on t->zap (called when it is readable). */
void broker_trust_serve(broker_trust *t);

/* Whether the Z85 key (a message's User-Id) is on role's list now. */
int broker_trust_allows(const broker_trust *t, broker_role role, const char *key);

/*
 * The public key (Z85, the ZAP user id) of the peer that sent msg, or NULL
 * when the socket has no CURVE. Valid while msg is.
 */
const char *broker_trust_key(zmq_msg_t *msg);

/* Frees the lists and closes the ZAP socket. */
void broker_trust_close(broker_trust *t);

#endif
