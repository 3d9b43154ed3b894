/* lib_cert_test: zcert certificate files (czmq's format) read and written, and key settings. */
#include "ferry_cert.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static char dir[64];

static int make_dir(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/ferry-cert-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_text(const char *name, const char *text)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* A secret certificate as czmq's zcert_save writes it, metadata included
 * (a public-key there is not the curve one). */
static const char czmq_secret[] =
    "#   ****  Generated on 2017-06-01 10:33:34 by CZMQ  ****\n"
    "#   ZeroMQ CURVE **Secret** Certificate\n"
    "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n"
    "\n"
    "metadata\n"
    "    name = \"test\"\n"
    "    public-key = \"not the key\"\n"
    "curve\n"
    "    public-key = \"nC)GgdVl^whi>1V(gd{Ptb^42pOPV<?G<y4wl7x&\"\r\n"
    "    secret-key = \"rmT^K[zc>Ql=avI=S=#ha]X}noK}[nE$prX8V/pk\"\n";

static void test_reads_czmq_certificates(void **state)
{
    (void)state;
    ferry_cert c;
    char err[256];
    assert_int_equal(ferry_cert_load(write_text("czmq_secret", czmq_secret), &c, err, sizeof err),
                     FERRY_OK);
    assert_string_equal(c.public_key, "nC)GgdVl^whi>1V(gd{Ptb^42pOPV<?G<y4wl7x&");
    assert_string_equal(c.secret_key, "rmT^K[zc>Ql=avI=S=#ha]X}noK}[nE$prX8V/pk");
    /* A public one, unquoted value (ZPL allows it). */
    const char *pub = write_text("czmq", "curve\n    public-key = "
                                         "nC)GgdVl^whi>1V(gd{Ptb^42pOPV<?G<y4wl7x&\n");
    assert_int_equal(ferry_cert_load(pub, &c, err, sizeof err), FERRY_OK);
    assert_string_equal(c.public_key, "nC)GgdVl^whi>1V(gd{Ptb^42pOPV<?G<y4wl7x&");
    assert_string_equal(c.secret_key, "");
}

static void test_refuses_what_is_not_a_certificate(void **state)
{
    (void)state;
    ferry_cert c;
    char err[256];
    const char *bad[] = {
        "",
        "metadata\n    public-key = \"nC)GgdVl^whi>1V(gd{Ptb^42pOPV<?G<y4wl7x&\"\n",
        "curve\n    public-key = \"nC)GgdVl^whi>1V(gd{Ptb^42pOPV<?G<y4wl7x\"\n",   /* 39 */
        "curve\n    public-key = \"nC)GgdVl^whi>1V(gd{Ptb^42pOPV<?G<y4wl7x&x\"\n", /* 41 */
        "curve\n    public-key = \"nC)GgdVl^whi>1V(gd{Ptb^42pOPV<?G<y4wl7x&\n",    /* unclosed */
        "curve\n    public-key = \"nC)GgdVl^whi>1V(gd{Ptb^42pOPV<?G<y4wl7x~\"\n",  /* not Z85 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ferry_cert_load(write_text("bad", bad[i]), &c, err, sizeof err),
                         FERRY_EPROTO);
        assert_non_null(strstr(err, "bad"));
    }
    assert_int_equal(ferry_cert_load("/nonexistent/cert", &c, err, sizeof err), FERRY_EIO);
    assert_non_null(strstr(err, "/nonexistent/cert"));
}

static void test_round_trip_and_modes(void **state)
{
    (void)state;
    ferry_cert made, pub, sec;
    char err[256], path[128], secret[140];
    assert_int_equal(ferry_cert_generate(&made), FERRY_OK);
    snprintf(path, sizeof path, "%s/me", dir);
    snprintf(secret, sizeof secret, "%s_secret", path);
    assert_int_equal(ferry_cert_save(path, &made, err, sizeof err), FERRY_OK);
    struct stat st;
    assert_int_equal(stat(secret, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(ferry_cert_load(path, &pub, err, sizeof err), FERRY_OK);
    assert_int_equal(ferry_cert_load(secret, &sec, err, sizeof err), FERRY_OK);
    assert_string_equal(pub.public_key, made.public_key);
    assert_string_equal(pub.secret_key, ""); /* the public file holds no secret */
    assert_string_equal(sec.secret_key, made.secret_key);
    /* Never over a key already there. */
    assert_int_equal(ferry_cert_save(path, &made, err, sizeof err), FERRY_EIO);
    assert_non_null(strstr(err, "exists"));

    /* Settings: the public half finds its secret beside it; keys go in pairs. */
    ferry_curve cv;
    assert_int_equal(ferry_curve_client(&cv, path, path, err, sizeof err), FERRY_OK);
    assert_true(cv.on);
    assert_string_equal(cv.own.secret_key, made.secret_key);
    assert_string_equal(cv.server_key, made.public_key);
    assert_int_equal(ferry_curve_client(&cv, NULL, "", err, sizeof err), FERRY_OK);
    assert_false(cv.on);
    assert_int_equal(ferry_curve_client(&cv, secret, NULL, err, sizeof err), FERRY_EUSAGE);
    assert_int_equal(ferry_curve_client(&cv, NULL, path, err, sizeof err), FERRY_EUSAGE);
    assert_false(cv.on);
    /* A public certificate alone is no key of one's own. */
    const char *lone = write_text("lone", "curve\n    public-key = "
                                          "\"nC)GgdVl^whi>1V(gd{Ptb^42pOPV<?G<y4wl7x&\"\n");
    assert_int_not_equal(ferry_curve_server(&cv, lone, err, sizeof err), FERRY_OK);
    assert_false(cv.on);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_czmq_certificates),
        cmocka_unit_test(test_refuses_what_is_not_a_certificate),
        cmocka_unit_test(test_round_trip_and_modes),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
