/*
 * ferry_err: the one error enum of the project.
 *
 * 0 is success. Each error has a stable wire code (the string that travels in
 * Error.code and that operators grep for) and a short description. errno,
 * zmq_errno() and protobuf unpack failures are turned into these at the
 * boundary where they happen.
 */
#ifndef FERRY_ERR_H
#define FERRY_ERR_H

/* X(ENUM, "wire_code", "description") */
#define FERRY_ERR_LIST(X)                                                              \
    X(FERRY_OK, "ok", "success")                                                       \
    X(FERRY_ENOMEM, "out_of_memory", "out of memory")                                  \
    X(FERRY_EPROTO, "bad_message", "malformed or unexpected message")                  \
    X(FERRY_EVERSION, "bad_version", "protocol version mismatch")                      \
    X(FERRY_ETIMEOUT, "timeout", "deadline passed")                                    \
    X(FERRY_EOVERLOADED, "overloaded", "a queue or table is full")                     \
    X(FERRY_EWORKER_LOST, "worker_lost", "the worker running the call was lost")       \
    X(FERRY_EENGINE_LOST, "engine_lost", "the engine running the script was lost")     \
    X(FERRY_EBROKER_LOST, "broker_lost", "the broker was lost")                        \
    X(FERRY_ENO_WORKER, "no_worker", "no worker serves the function")                  \
    X(FERRY_ENO_ENGINE, "no_engine", "no engine is there to run the script")             \
    X(FERRY_ESCRIPT, "script_error", "the script raised an error")                     \
    X(FERRY_ESYNTAX, "syntax_error", "the script does not compile")                    \
    X(FERRY_ECALL, "call_error", "the function raised an error")                       \
    X(FERRY_EBADARG, "bad_argument", "bad argument")                                   \
    X(FERRY_EBADVALUE, "bad_value", "value cannot cross the wire")                     \
    X(FERRY_ELIMIT, "limit", "a script limit was exceeded")                            \
    X(FERRY_EUNREACHABLE, "unreachable", "peer cannot be reached")                     \
    X(FERRY_EIO, "io_error", "system call failed")                                     \
    X(FERRY_EUSAGE, "usage", "bad command-line usage")                                 \
    X(FERRY_EAUTH, "not_authorized", "not authorized by the broker")

typedef enum {
#define FERRY_ERR_ENUM(e, code, desc) e,
    FERRY_ERR_LIST(FERRY_ERR_ENUM)
#undef FERRY_ERR_ENUM
        FERRY_ERR_COUNT
} ferry_err;

/* The wire code of err ("timeout"); never NULL. */
const char *ferry_err_code(ferry_err err);

/* A short description of err; never NULL. */
const char *ferry_err_desc(ferry_err err);

/* The error whose wire code is code, or FERRY_EPROTO when none matches. */
ferry_err ferry_err_from_code(const char *code);

#endif
