/*
 * ferry_cert: CURVE key pairs in czmq's zcert certificate files, and the
 * CURVE settings of one process.
 *
 * A certificate NAME is two ZPL text files, the format czmq's zmakecert
 * writes: NAME holds `curve / public-key = "<40 Z85 chars>"` (hand it out),
 * NAME_secret holds the public and the secret key (mode 0600, keep it).
 * Keys made with czmq's tools load here and ours load there.
 *
 * Keys are kept as their 40-character Z85 text, the form libzmq's
 * ZMQ_CURVE_* options and the ZAP User-Id take.
 */
#ifndef FERRY_CERT_H
#define FERRY_CERT_H

#include "ferry_err.h"

#include <stddef.h>
#include <stdint.h>

#define FERRY_KEY_Z85 40 /* characters of a CURVE key in Z85 */

typedef struct {
    char public_key[FERRY_KEY_Z85 + 1];
    char secret_key[FERRY_KEY_Z85 + 1]; /* "" when the file held none */
} ferry_cert;

/*
 * How a process secures its sockets, loaded once from its flags. on == 0:
 * no CURVE (plain ZMTP, for loopback and ipc://). A connecting process has
 * its own key pair and the server's public key; the broker has its own key
 * pair and no server key.
 */
typedef struct {
    int on;
    ferry_cert own;                     /* with its secret key */
    char server_key[FERRY_KEY_Z85 + 1]; /* the broker's public key; "" on the broker */
} ferry_curve;

/* A fresh key pair (zmq_curve_keypair). FERRY_EIO when libzmq has no CURVE. */
ferry_err ferry_cert_generate(ferry_cert *cert);

/*
 * Reads the certificate file at path: its public key, and its secret key if
 * it has one. FERRY_EIO (unreadable) or FERRY_EPROTO (no valid public-key)
 * with a message naming the file in err.
 */
ferry_err ferry_cert_load(const char *path, ferry_cert *cert, char *err, size_t errlen);

/*
 * Writes path (the public certificate, mode 0644) and path_secret (both
 * keys, mode 0600, made so before anything is written). Refuses (FERRY_EIO)
 * when either file exists already. Message in err on failure.
 */
ferry_err ferry_cert_save(const char *path, const ferry_cert *cert, char *err, size_t errlen);

/* Decodes a 40-character Z85 key into 32 bytes. FERRY_EPROTO when it is not one. */
ferry_err ferry_key_decode(const char *z85, uint8_t out[32]);

/*
 * The settings of a connecting process from --curve-key FILE (its secret
 * certificate; FILE_secret is tried when FILE holds no secret key) and
 * --broker-key FILE (the broker's public certificate). Both NULL or empty:
 * curve->on = 0. One without the other, or a file that does not load:
 * FERRY_EUSAGE / the load error, with a message in err.
 */
ferry_err ferry_curve_client(ferry_curve *curve, const char *own_path, const char *server_path,
                             char *err, size_t errlen);

/* The settings of the broker from --curve-key FILE (NULL or empty: off). */
ferry_err ferry_curve_server(ferry_curve *curve, const char *own_path, char *err, size_t errlen);

#endif
