/* QMP client: the stream parser, and the client against fake QMP peers (forked children). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

#include "cleanup-types.h"
#include "fake-qmp.h"
#include "qmp.h"

#define GARBAGE_TOTAL (100u << 20) /* what the hostile peers try to send */

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- parser ---- */

static const char stream[] = "{\"QMP\": {\"version\": {}}}\r\n"
                             "  {\"event\": \"X\", \"data\": {\"s\": \"}{\\\"]\"}}\n"
                             "{\"return\": [1, {\"a\": \"\\\\\"}], \"id\": 7}";

static void check_stream_messages(cJSON **m) {
        assert_non_null(cJSON_GetObjectItem(m[0], "QMP"));
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(m[1], "event")), "X");
        assert_string_equal(
                cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(m[1], "data"), "s")), "}{\"]");
        assert_int_equal(cJSON_GetObjectItem(m[2], "id")->valueint, 7);
}

/* Feeds the stream in chunks of every size from 1 byte to all at once. */
static void test_parser_any_chunking(void **state) {
        size_t len = strlen(stream);

        for (size_t chunk = 1; chunk <= len; chunk++) {
                struct qmp_parser p;
                cJSON *m[3] = {0};
                size_t got = 0;

                qmp_parser_init(&p);
                for (size_t off = 0; off < len; off += chunk) {
                        size_t n = len - off < chunk ? len - off : chunk;
                        assert_int_equal(qmp_parser_feed(&p, stream + off, n), 0);
                        int r;
                        while ((r = qmp_parser_next(&p, &m[got])) == 1) {
                                got++;
                                assert_true(got <= 3);
                        }
                        assert_int_equal(r, 0);
                }
                assert_int_equal(got, 3);
                check_stream_messages(m);
                for (size_t i = 0; i < 3; i++)
                        cJSON_Delete(m[i]);
                qmp_parser_done(&p);
        }
}

static const struct {
        const char *text;
        int expected;
} bad_streams[] = {
        {"hello world\n", -EPROTO}, {"[1, 2]", -EPROTO},     {"{\"a\": }", -EPROTO},
        {"{\"a\": 1} x", -EPROTO},  {"{\"a\": 1]", -EPROTO}, {"\"str\"", -EPROTO},
};

static void test_parser_garbage(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(bad_streams); i++) {
                struct qmp_parser p;
                cJSON *m = NULL;
                int r;

                qmp_parser_init(&p);
                assert_int_equal(qmp_parser_feed(&p, bad_streams[i].text, strlen(bad_streams[i].text)), 0);
                while ((r = qmp_parser_next(&p, &m)) == 1) {
                        cJSON_Delete(m);
                        m = NULL;
                }
                assert_int_equal(r, bad_streams[i].expected);
                qmp_parser_done(&p);
        }
}

/* An object that never ends is refused once it passes max; memory stays within 2 * max. */
static void test_parser_size_cap(void **state) {
        struct qmp_parser p;
        char chunk[4096];
        cJSON *m = NULL;
        int r = 0;
        size_t fed = 1;

        memset(chunk, 'x', sizeof(chunk));
        qmp_parser_init(&p);
        assert_int_equal(qmp_parser_feed(&p, "{\"a\":\"", 6), 0);
        while (fed < GARBAGE_TOTAL && r == 0) {
                r = qmp_parser_feed(&p, chunk, sizeof(chunk));
                if (r == 0)
                        r = qmp_parser_next(&p, &m);
                fed += sizeof(chunk);
        }
        assert_int_equal(r, -EMSGSIZE);
        assert_true(fed <= QMP_MSG_MAX + 2 * sizeof(chunk));
        assert_true(p.cap <= 2 * QMP_MSG_MAX);
        qmp_parser_done(&p);

        /* Feeding without draining is refused past 2 * max. */
        qmp_parser_init(&p);
        p.max = 1000;
        assert_int_equal(qmp_parser_feed(&p, chunk, 1500), 0);
        assert_int_equal(qmp_parser_feed(&p, chunk, 1000), -EMSGSIZE);
        qmp_parser_done(&p);
}

/* ---- client against fake peers ---- */

/* Greeting in pieces, an event before the reply, the reply split over writes, DEVICE_DELETED
 * before the device_del reply: the client must queue it. */
static int serve_normal(int lfd, const void *ud) {
        struct qmp_parser p;
        int fd = fake_accept(lfd);
        cJSON *req;

        qmp_parser_init(&p);
        fake_send(fd, "{\"QMP\": {\"vers");
        usleep(20000);
        fake_send(fd, "ion\": {}, \"capabilities\": []}}\r");
        usleep(20000);
        fake_send(fd, "\n");
        req = fake_recv(fd, &p);
        if (!req || strcmp(fake_command(req), "qmp_capabilities") != 0)
                return 1;
        fake_reply(fd, req, "\"return\": {}");
        cJSON_Delete(req);

        req = fake_recv(fd, &p);
        if (!req || strcmp(fake_command(req), "qom-list") != 0)
                return 2;
        char *text = cJSON_PrintUnformatted(req);
        bool path_ok = text && strstr(text, "\"path\":\"/machine/peripheral\"");
        free(text);
        if (!path_ok)
                return 3;
        fake_send(fd, "{\"event\": \"RESET\", \"data\": {}, \"timestamp\": {}}\r\n{\"return\": {\"stale\": "
                      "1}, \"id\": 999}\n");
        char *id = cJSON_PrintUnformatted(cJSON_GetObjectItem(req, "id"));
        char reply[256];
        snprintf(reply, sizeof(reply),
                 "{\"return\": [{\"name\": \"xhci\", \"type\": \"child<qemu-xhci>\"}], \"id\": %s}\r\n", id);
        free(id);
        size_t half = strlen(reply) / 2;
        char first[256];
        snprintf(first, sizeof(first), "%.*s", (int)half, reply);
        fake_send(fd, first);
        usleep(30000);
        fake_send(fd, reply + half);
        cJSON_Delete(req);

        req = fake_recv(fd, &p);
        if (!req || strcmp(fake_command(req), "device_del") != 0)
                return 4;
        fake_send(fd, "{\"event\": \"DEVICE_DELETED\", \"data\": {\"path\": \"/machine/peripheral/other\", "
                      "\"device\": \"other\"}}"
                      "{\"event\": \"DEVICE_DELETED\", \"data\": {\"path\": "
                      "\"/machine/peripheral/vhp-usb-001-005\", \"device\": \"vhp-usb-001-005\"}}");
        fake_reply(fd, req, "\"return\": {}");
        cJSON_Delete(req);
        fake_drain(fd);
        return 0;
}

static void test_normal_flow(void **state) {
        struct fake_qmp f;
        _cleanup_qmp_ struct qmp *q = NULL;
        _cleanup_cjson_ cJSON *ret = NULL, *args = cJSON_Parse("{\"path\": \"/machine/peripheral\"}"),
                              *del = cJSON_Parse("{\"id\": \"vhp-usb-001-005\"}"), *ev = NULL;

        fake_qmp_start(&f, serve_normal, NULL);
        assert_int_equal(qmp_connect(f.path, 5000, &q), 0);
        assert_int_equal(qmp_execute(q, "qom-list", args, &ret, NULL, NULL), 0);
        assert_true(cJSON_IsArray(ret));
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(ret, 0), "name")),
                            "xhci");

        assert_int_equal(qmp_execute(q, "device_del", del, NULL, NULL, NULL), 0);
        /* Arrived before the reply: found in the queue without reading. */
        assert_int_equal(qmp_wait_event(q, "DEVICE_DELETED", "vhp-usb-001-005", 100, &ev), 0);
        assert_string_equal(
                cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "data"), "device")),
                "vhp-usb-001-005");
        /* The other device's event is still queued; nothing more comes for this one. */
        assert_int_equal(qmp_wait_event(q, "DEVICE_DELETED", "other", 100, NULL), 0);
        assert_int_equal(qmp_wait_event(q, "DEVICE_DELETED", "vhp-usb-001-005", 200, NULL), -ETIMEDOUT);
        qmp_close(TAKE_PTR(q));
        assert_int_equal(fake_qmp_finish(&f), 0);
}

static int serve_silent(int lfd, const void *ud) {
        int fd = fake_accept(lfd);
        fake_drain(fd);
        return 0;
}

static void test_no_greeting(void **state) {
        struct fake_qmp f;
        struct qmp *q = NULL;

        fake_qmp_start(&f, serve_silent, NULL);
        int64_t t0 = now_ms();
        /* Something listens but does not greet: reachable in principle, not answering (not "down"). */
        assert_int_equal(qmp_connect(f.path, 300, &q), -ETIMEDOUT);
        assert_true(now_ms() - t0 < 5000);
        assert_null(q);
        assert_int_equal(fake_qmp_finish(&f), 0);
}

static void test_not_running(void **state) {
        struct qmp *q = NULL;
        char dir[] = "/tmp/vhp-qmp.XXXXXX", path[64];
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/qmp.sock", dir);
        assert_int_equal(qmp_connect(path, 1000, &q), -EHOSTDOWN); /* missing */

        /* A socket left behind by a dead QEMU: connection refused. */
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(fd);
        assert_int_equal(qmp_connect(path, 1000, &q), -EHOSTDOWN);
        unlink(path);
        rmdir(dir);
}

struct raw_answer {
        const char *before;   /* sent before the standard greeting when set */
        const char *greeting; /* sent instead of the standard one when set */
        const char *answer;   /* sent after the first command */
        bool close_after;
};

static int serve_raw(int lfd, const void *ud) {
        const struct raw_answer *a = ud;
        struct qmp_parser p;
        int fd = fake_accept(lfd);

        qmp_parser_init(&p);
        if (a->before)
                fake_send(fd, a->before);
        if (a->greeting) {
                fake_send(fd, a->greeting);
                fake_drain(fd);
                return 0;
        }
        if (fake_handshake(fd, &p) < 0)
                return 1;
        cJSON *req = fake_recv(fd, &p);
        fake_send(fd, a->answer);
        cJSON_Delete(req);
        if (a->close_after)
                close(fd);
        else
                fake_drain(fd);
        return 0;
}

static const struct {
        struct raw_answer a;
        int expected_connect, expected_execute;
} raw_cases[] = {
        {{.answer = "hello world\r\n"}, 0, -EPROTO},
        {{.answer = "{\"return\": {\"a", .close_after = true}, 0, -EHOSTDOWN},
        {{.answer = "", .close_after = true}, 0, -EHOSTDOWN},
        {{.answer = "{\"id\": 2}\r\n"}, 0, -EPROTO},
        {{.greeting = "{\"hello\": 1}\r\n"}, -EPROTO, 0},
        {{.greeting = "garbage\r\n"}, -EPROTO, 0},
        /* Real QEMU, when the previous client left before its device_del completed: the event
         * reaches the next client ahead of the greeting. */
        {{.before = "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": "
                    "\"DEVICE_DELETED\", \"data\": {\"device\": \"vhp-usb-001-005\", \"path\": "
                    "\"/machine/peripheral/vhp-usb-001-005\"}}\r\n",
          .answer = "{\"return\": {}, \"id\": 2}\r\n"},
         0,
         0},
        {{.before = "{\"event\": \"RESET\"}\r\n", .greeting = "{\"return\": {}}\r\n"}, -EPROTO, 0},
};

static void test_bad_peers(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(raw_cases); i++) {
                struct fake_qmp f;
                _cleanup_qmp_ struct qmp *q = NULL;

                fake_qmp_start(&f, serve_raw, &raw_cases[i].a);
                int r = qmp_connect(f.path, 3000, &q);
                assert_int_equal(r, raw_cases[i].expected_connect);
                if (r == 0)
                        assert_int_equal(qmp_execute(q, "query-status", NULL, NULL, NULL, NULL),
                                         raw_cases[i].expected_execute);
                qmp_close(TAKE_PTR(q));
                assert_int_equal(fake_qmp_finish(&f), 0);
        }
}

static int serve_error(int lfd, const void *ud) {
        static const struct fake_step steps[] = {
                {.command = "device_add",
                 .expect = {"\"driver\":\"usb-host\""},
                 .reply = "\"error\": {\"class\": \"GenericError\", \"desc\": \"failed to find host usb "
                          "device 1:5\"}"},
                FAKE_END,
        };
        return fake_qmp_script(lfd, steps);
}

static void test_error_reply(void **state) {
        struct fake_qmp f;
        _cleanup_qmp_ struct qmp *q = NULL;
        _cleanup_free_ char *cls = NULL, *desc = NULL;
        _cleanup_cjson_ cJSON *args = cJSON_Parse("{\"driver\": \"usb-host\"}");

        fake_qmp_start(&f, serve_error, NULL);
        assert_int_equal(qmp_connect(f.path, 3000, &q), 0);
        assert_int_equal(qmp_execute(q, "device_add", args, NULL, &cls, &desc), -EREMOTEIO);
        assert_string_equal(cls, "GenericError");
        assert_string_equal(desc, "failed to find host usb device 1:5");
        qmp_close(TAKE_PTR(q));
        assert_int_equal(fake_qmp_finish(&f), 0);
}

/* An endless string, endless nesting, and an endless series of valid events: each is cut off
 * long before 100 MB, with bounded memory. */
static void test_flood(void **state) {
        static const struct fake_flood floods[] = {
                {"{\"return\": \"", "x"},
                {"", "{\"a\": ["},
                {"", "{\"event\": \"X\", \"data\": {}}\r\n"},
        };

        for (size_t i = 0; i < ELEMENTSOF(floods); i++) {
                struct fake_qmp f;
                _cleanup_qmp_ struct qmp *q = NULL;

                fake_qmp_start(&f, fake_qmp_flood, &floods[i]);
                assert_int_equal(qmp_connect(f.path, 20000, &q), 0);
                int r = qmp_execute(q, "query-status", NULL, NULL, NULL, NULL);
                /* Under valgrind, reading the cap's worth of bytes may outlast the deadline instead:
                 * bounded either way. */
                if (!(RUNNING_ON_VALGRIND && r == -ETIMEDOUT))
                        assert_int_equal(r, -EMSGSIZE);
                qmp_close(TAKE_PTR(q));
                assert_int_equal(fake_qmp_finish(&f), 0);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parser_any_chunking),
                cmocka_unit_test(test_parser_garbage),
                cmocka_unit_test(test_parser_size_cap),
                cmocka_unit_test(test_normal_flow),
                cmocka_unit_test(test_no_greeting),
                cmocka_unit_test(test_not_running),
                cmocka_unit_test(test_bad_peers),
                cmocka_unit_test(test_error_reply),
                cmocka_unit_test(test_flood),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
