/* Tests of vhotplug-api's wire protocol (lib/proto.c) and its request dispatch (api_handle_line):
 * what each request line becomes, byte for byte, without a server or a device. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <cmocka.h>
#include <libudev.h>

#include "api.h"
#include "proto.h"

/* Parses line and returns the error (malloc'd) or NULL when it parsed. */
static char *parse_error(const char *line) {
        struct proto_request r;
        char *err = NULL;
        int k = proto_parse(line, strlen(line), &r, &err);

        if (k == 0) {
                proto_request_clear(&r);
                free(err);
                return NULL;
        }
        assert_int_equal(k, -EINVAL);
        assert_non_null(err);
        return err;
}

static void test_parse(void **state) {
        static const struct {
                const char *line, *error; /* error: a part of the message; NULL: parses */
        } cases[] = {
                {"{\"action\":\"usb_list\"}", NULL},
                {"  {\"action\": \"usb_list\", \"disconnected\": null, \"tag\": null}  ", NULL},
                {"{\"action\":\"usb_list\"}\r", NULL},
                {"", "an empty line"},
                {"   ", "an empty line"},
                {"[1]", "expected a JSON object"},
                {"\"x\"", "expected a JSON object"},
                {"42", "expected a JSON object"},
                {"null", "expected a JSON object"},
                {"{", "not JSON"},
                {"not json", "not JSON"},
                {"{\"action\":\"a\"} {\"action\":\"b\"}", "text after the JSON object"},
                {"{}", "No action specified"},
                {"{\"action\": null}", "No action specified"},
                {"{\"action\": \"\"}", "No action specified"},
                {"{\"action\": 5}", "\"action\" must be a string"},
                {"{\"action\": [\"usb_list\"]}", "\"action\" must be a string"},
                {"{\"action\": \"usb_list\", \"tag\": \"a\\u0000b\"}", "\\u0000 inside a string"},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *err = parse_error(cases[i].line);
                if (!cases[i].error) {
                        if (err)
                                fail_msg("'%s' should parse, got: %s", cases[i].line, err);
                        continue;
                }
                if (!err || !strstr(err, cases[i].error))
                        fail_msg("'%s': expected an error with '%s', got: %s", cases[i].line, cases[i].error,
                                 err ? err : "(parsed)");
                free(err);
        }
        /* A NUL byte inside the line, and a line over the bound. */
        {
                struct proto_request r;
                char *err = NULL, *big;
                assert_int_equal(proto_parse("{\"action\":\0\"x\"}", 15, &r, &err), -EINVAL);
                assert_non_null(strstr(err, "NUL byte"));
                free(err);
                err = NULL;
                big = malloc(PROTO_MAX_LINE + 2);
                memset(big, ' ', PROTO_MAX_LINE + 1);
                assert_int_equal(proto_parse(big, PROTO_MAX_LINE + 1, &r, &err), -EINVAL);
                assert_non_null(strstr(err, "longer than"));
                free(err);
                free(big);
        }
}

/* Parses a request that must parse. */
static struct proto_request req(const char *line) {
        struct proto_request r;
        char *err = NULL;

        if (proto_parse(line, strlen(line), &r, &err) < 0)
                fail_msg("'%s': %s", line, err);
        return r;
}

static void test_arguments(void **state) {
        struct proto_request r =
                req("{\"action\":\"x\",\"s\":\"v\",\"e\":\"\",\"n\":null,\"b\":true,\"num\":3,"
                    "\"str\":\"7\",\"neg\":-1,\"frac\":1.5,\"big\":70000,\"zero\":0,\"h\":\"0X1A2b\","
                    "\"hbad\":\"12345\",\"hz\":\"zz\",\"o\":{},\"dup\":1,\"dup\":2}");
        const char *s = NULL;
        char *err = NULL;
        bool b = false;
        uint32_t u = 0;
        uint16_t h = 0;

        assert_int_equal(proto_get_string(&r, "s", 10, &s, &err), 1);
        assert_string_equal(s, "v");
        assert_int_equal(proto_get_string(&r, "s", 0, &s, &err), -EINVAL); /* longer than 0 bytes */
        free(err), err = NULL;
        s = NULL;
        assert_int_equal(proto_get_string(&r, "e", 10, &s, &err), 0); /* "" is absent (older daemon) */
        assert_int_equal(proto_get_string(&r, "n", 10, &s, &err), 0); /* null is absent */
        assert_int_equal(proto_get_string(&r, "missing", 10, &s, &err), 0);
        assert_null(s);
        assert_int_equal(proto_get_string(&r, "num", 10, &s, &err), -EINVAL);
        assert_non_null(strstr(err, "\"num\" must be a string"));
        free(err), err = NULL;
        assert_int_equal(proto_get_bool(&r, "b", &b, &err), 1);
        assert_true(b);
        assert_int_equal(proto_get_bool(&r, "n", &b, &err), 0);
        assert_int_equal(proto_get_bool(&r, "s", &b, &err), -EINVAL);
        free(err), err = NULL;
        assert_int_equal(proto_get_uint(&r, "num", 255, &u, &err), 1);
        assert_int_equal(u, 3);
        assert_int_equal(proto_get_uint(&r, "str", 255, &u, &err), 1); /* a decimal string */
        assert_int_equal(u, 7);
        for (const char *const *k = (const char *const[]){"neg", "frac", "big", "zero", "s", "o", NULL}; *k;
             k++) {
                assert_int_equal(proto_get_uint(&r, *k, 65535, &u, &err), -EINVAL);
                free(err), err = NULL;
        }
        assert_int_equal(proto_get_hex4(&r, "h", &h, &err), 1);
        assert_int_equal(h, 0x1a2b);
        assert_int_equal(proto_get_hex4(&r, "hbad", &h, &err), -EINVAL);
        free(err), err = NULL;
        assert_int_equal(proto_get_hex4(&r, "hz", &h, &err), -EINVAL);
        free(err), err = NULL;
        assert_int_equal(proto_get_uint(&r, "dup", 9, &u, &err), -EINVAL); /* given twice */
        assert_non_null(strstr(err, "given twice"));
        free(err);
        proto_request_clear(&r);
}

static void test_selectors(void **state) {
        static const struct {
                const char *line;
                int by; /* enum ops_by, or -1: an error containing error */
                const char *error;
        } usb[] =
                {
                        {"{\"action\":\"a\",\"device_node\":\"/dev/bus/usb/001/002\",\"bus\":1,\"port\":2}",
                         OPS_BY_NODE, NULL},
                        {"{\"action\":\"a\",\"device_node\":null,\"bus\":1,\"port\":2,\"vid\":\"1\",\"pid\":"
                         "\"2\"}",
                         OPS_BY_BUS_PORT, NULL},
                        {"{\"action\":\"a\",\"bus\":\"1\",\"port\":\"2\"}", OPS_BY_BUS_PORT, NULL},
                        {"{\"action\":\"a\",\"vid\":\"046D\",\"pid\":\"c52b\",\"tag\":\"t\"}", OPS_BY_IDS,
                         NULL},
                        {"{\"action\":\"a\",\"tag\":\"cam\",\"vm\":null}", OPS_BY_TAG, NULL},
                        {"{\"action\":\"a\",\"device_node\":\"\",\"tag\":\"cam\"}", OPS_BY_TAG, NULL},
                        {"{\"action\":\"a\"}", -1, "no device named"},
                        {"{\"action\":\"a\",\"bus\":1}", -1, "\"bus\" needs \"port\""},
                        {"{\"action\":\"a\",\"port\":1}", -1, "\"port\" needs \"bus\""},
                        {"{\"action\":\"a\",\"pid\":\"0001\"}", -1, "\"pid\" needs \"vid\""},
                        {"{\"action\":\"a\",\"bus\":0,\"port\":1}", -1, "whole number"},
                        {"{\"action\":\"a\",\"bus\":1,\"port\":256}", -1, "whole number from 1 to 255"},
                        {"{\"action\":\"a\",\"device_node\":5}", -1, "must be a string"},
                },
          pci[] = {
                  {"{\"action\":\"a\",\"address\":\"00:14.3\",\"tag\":\"x\"}", OPS_BY_ADDRESS, NULL},
                  {"{\"action\":\"a\",\"vid\":\"8086\",\"did\":\"A0F0\"}", OPS_BY_IDS, NULL},
                  {"{\"action\":\"a\",\"tag\":\"net\"}", OPS_BY_TAG, NULL},
                  {"{\"action\":\"a\",\"address\":\"not-an-address\"}", -1, "PCI address"},
                  {"{\"action\":\"a\",\"vid\":\"8086\"}", -1, "\"vid\" needs \"did\""},
                  {"{\"action\":\"a\"}", -1, "give \"address\""},
          };

        for (int kind = 0; kind < 2; kind++) {
                size_t n = kind ? sizeof(pci) / sizeof(pci[0]) : sizeof(usb) / sizeof(usb[0]);
                for (size_t i = 0; i < n; i++) {
                        const char *line = kind ? pci[i].line : usb[i].line,
                                   *want = kind ? pci[i].error : usb[i].error;
                        int by = kind ? pci[i].by : usb[i].by;
                        struct proto_request r = req(line);
                        struct ops_selector sel;
                        char *err = NULL;
                        int k = kind ? proto_pci_selector(&r, &sel, &err)
                                     : proto_usb_selector(&r, &sel, &err);

                        if (by >= 0 && (k != 0 || (int)sel.by != by))
                                fail_msg("'%s': expected selector %d, got %d/%d (%s)", line, by, k,
                                         (int)sel.by, err ? err : "");
                        if (by < 0 && (k != -EINVAL || !err || !strstr(err, want)))
                                fail_msg("'%s': expected an error with '%s', got %d (%s)", line, want, k,
                                         err ? err : "");
                        free(err);
                        proto_request_clear(&r);
                }
        }
        {
                struct proto_request r = req("{\"action\":\"a\",\"vid\":\"046D\",\"pid\":\"c52b\"}");
                struct ops_selector sel;
                assert_int_equal(proto_usb_selector(&r, &sel, NULL), 0);
                assert_int_equal(sel.vendor_id, 0x046d);
                assert_int_equal(sel.product_id, 0xc52b);
                proto_request_clear(&r);
                r = req("{\"action\":\"a\",\"address\":\"00:14.3\"}");
                assert_int_equal(proto_pci_selector(&r, &sel, NULL), 0);
                assert_string_equal(sel.address, "0000:00:14.3");
                proto_request_clear(&r);
        }
}

static void test_device_objects(void **state) {
        struct dev d = {
                .kind = DEV_USB,
                .devpath = (char *)"/devices/pci0000:00/0000:00:14.0/usb1/1-3.2",
                .sysname = (char *)"1-3.2",
                .devnode = (char *)"/dev/bus/usb/001/005",
                .has_ids = true,
                .vendor_id = 0x046d,
                .product_id = 0xc52b,
                .vendor_name = (char *)"Logitech \"Inc\"\n",
                .product_name = NULL,
                .serial = (char *)"ABC",
                .busnum = 1,
                .devnum = 5,
                .port = 3,
                .dev_class = 0,
                .dev_subclass = 0,
                .dev_protocol = 0,
                .n_ifaces = 2,
                .ifaces = {{3, 1, 1}, {3, 0, 0}},
        };
        cJSON *o = proto_usb_device(&d);
        char *s = cJSON_PrintUnformatted(o);

        assert_string_equal(
                s, "{\"device_node\":\"/dev/bus/usb/001/005\",\"vid\":\"046d\",\"pid\":\"c52b\","
                   "\"vendor_name\":\"Logitech \\\"Inc\\\"\\n\",\"product_name\":null,"
                   "\"interfaces\":\":030101:030000:\",\"device_class\":0,\"device_subclass\":0,"
                   "\"device_protocol\":0,\"busnum\":1,\"devnum\":5,\"portnum\":3,\"serial\":\"ABC\","
                   "\"sys_name\":\"1-3.2\"}");
        free(s);
        cJSON_Delete(o);

        struct dev p = {
                .kind = DEV_PCI,
                .pci_address = (char *)"0000:00:14.3",
                .driver = (char *)"iwlwifi",
                .has_ids = true,
                .vendor_id = 0x8086,
                .product_id = 0xa0f0,
                .dev_class = 2,
                .dev_subclass = 0x80,
                .dev_protocol = 0,
                .subsys_vendor_id = 0x8086,
                .subsys_device_id = 0x0074,
        };
        o = proto_pci_device(&p);
        s = cJSON_PrintUnformatted(o);
        assert_string_equal(s, "{\"address\":\"0000:00:14.3\",\"driver\":\"iwlwifi\",\"vendor_id\":32902,"
                               "\"device_id\":41200,\"vid\":\"8086\",\"did\":\"A0F0\",\"vendor_name\":null,"
                               "\"device_name\":null,\"pci_class\":2,\"pci_subclass\":128,\"pci_prog_if\":0,"
                               "\"pci_subsystem_vendor_id\":\"8086\",\"pci_subsystem_id\":\"0074\"}");
        free(s);
        cJSON_Delete(o);

        /* From a history row: what it knows; the device node made from bus and device numbers. */
        struct db_history h = {.has_ids = true,
                               .vendor_id = 0x1209,
                               .product_id = 1,
                               .busnum = 2,
                               .devnum = 7,
                               .port_path = (char *)"4.1",
                               .devpath = (char *)"/devices/x/usb2/2-4.1"};
        o = proto_usb_device_from_history(&h);
        assert_string_equal(cJSON_GetObjectItem(o, "device_node")->valuestring, "/dev/bus/usb/002/007");
        assert_int_equal(cJSON_GetObjectItem(o, "portnum")->valueint, 4);
        assert_string_equal(cJSON_GetObjectItem(o, "sys_name")->valuestring, "2-4.1");
        cJSON_Delete(o);

        /* A reply is one line of valid UTF-8 JSON, whatever the error holds. */
        s = proto_failed_line("bad \xff byte\nand a newline");
        assert_string_equal(s,
                            "{\"result\":\"failed\",\"error\":\"bad \xef\xbf\xbd byte\\nand a newline\"}\n");
        free(s);
}

static void test_dispatch(void **state) {
        struct cfg *cfg = NULL;
        struct cfg_error cerr;
        const char *text =
                "{\"vms\":[{\"name\":\"vm1\",\"type\":\"qemu\",\"socket\":\"/nonexistent/vm1.sock\"}]}";
        struct ops_ctx ctx = {0};
        char *line;

        assert_int_equal(cfg_load_string(text, strlen(text), "cfg.json", &cfg, &cerr), 0);
        ctx.x.cfg = cfg;
        ctx.udev = ctx.x.udev = udev_new();
        static const struct {
                const char *line, *reply;
        } cases[] = {
                {"{\"action\":\"frobnicate\"}",
                 "{\"result\":\"failed\",\"error\":\"Unknown message: frobnicate\"}\n"},
                {"{\"action\":\"evil\\nline\"}",
                 "{\"result\":\"failed\",\"error\":\"Unknown message: evil\\\\x0aline\"}\n"},
                {"{}", "{\"result\":\"failed\",\"error\":\"No action specified\"}\n"},
                {"{\"action\":\"usb_suspend\",\"vm\":\"nope\"}",
                 "{\"result\":\"failed\",\"error\":\"VM nope is not found in the config file\"}\n"},
                {"{\"action\":\"vmm_args\",\"vm\":null}",
                 "{\"result\":\"failed\",\"error\":\"VM name is required\"}\n"},
                {"{\"action\":\"vmm_args\",\"vm\":\"vm1\",\"qemu_bus_start_index\":-1}",
                 "{\"result\":\"failed\",\"error\":\"\\\"qemu_bus_start_index\\\" must be a whole number "
                 "from 0 to 9999\"}\n"},
                {"{\"action\":\"enable_notifications\"}",
                 "{\"result\":\"failed\",\"error\":\"notifications need a connection\"}\n"},
                {"{\"action\":\"usb_attach\",\"bus\":1}",
                 "{\"result\":\"failed\",\"error\":\"\\\"bus\\\" needs \\\"port\\\"\"}\n"},
                {"{\"action\":\"why\"}",
                 "{\"result\":\"failed\",\"error\":\"\\\"device\\\" is required\"}\n"},
                {"{\"action\":\"status\",\"vm\":\"nope\"}",
                 "{\"result\":\"failed\",\"error\":\"VM nope is not found in the configuration file\"}\n"},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                line = api_handle_line(&ctx, NULL, cases[i].line, strlen(cases[i].line));
                if (!line || strcmp(line, cases[i].reply) != 0)
                        fail_msg("'%s': expected %s got %s", cases[i].line, cases[i].reply,
                                 line ? line : "NULL");
                free(line);
        }
        udev_unref(ctx.udev);
        cfg_free(cfg);
}

static void test_cids(void **state) {
        uint32_t cids[] = {3, 7};
        struct cfg_api open = {0}, closed = {.allowed_cids = cids, .n_allowed_cids = 2};

        assert_true(api_cid_allowed(&open, 1));
        assert_true(api_cid_allowed(&open, 12345));
        assert_true(api_cid_allowed(&closed, 3));
        assert_true(api_cid_allowed(&closed, 7));
        assert_false(api_cid_allowed(&closed, 2));
        assert_false(api_cid_allowed(&closed, 0xffffffffu));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse),     cmocka_unit_test(test_arguments),
                cmocka_unit_test(test_selectors), cmocka_unit_test(test_device_objects),
                cmocka_unit_test(test_dispatch),  cmocka_unit_test(test_cids),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
