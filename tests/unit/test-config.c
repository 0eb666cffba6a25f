/* Configuration loader: every error class names the file and the JSON path, warnings for unknown
 * and ineffective keys, the legacy evdev form, enable/disable, file checks, and scale. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
/* libasan's (gcc ships no header for it): mallinfo2() is not ASan's heap */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#include "cleanup.h"
#include "config.h"

/* Tests write JSON with single quotes for readability; q() turns them into double quotes. */
static char *q(const char *s) {
        char *r = strdup(s);
        assert_non_null(r);
        for (char *p = r; *p; p++)
                if (*p == '\'')
                        *p = '"';
        return r;
}

#define VMS                                                                                                 \
        "'vms': [{'name': 'vm1', 'type': 'qemu', 'socket': '/run/vm1.qmp'},"                                \
        "        {'name': 'vm2', 'type': 'qemu', 'socket': '/run/vm2.qmp'},"                                \
        "        {'name': 'audio', 'type': 'crosvm', 'socket': '/run/audio.sock'}]"
#define SECTION(sec, entry) "{" VMS ", '" sec "': [" entry "]}"
#define ENTRY_RULE(rule) "{'targetVm': 'vm1', 'allow': [" rule "]}"
#define USB(rule) SECTION("usbPassthrough", ENTRY_RULE(rule))
#define PCI(rule) SECTION("pciPassthrough", ENTRY_RULE(rule))
#define EVDEV(rule) SECTION("evdevPassthrough", ENTRY_RULE(rule))
#define GENERAL(body) "{'general': {" body "}}"

/* Loads single-quoted JSON as "cfg.json"; returns the result code. */
static int load(const char *json, struct cfg **ret, struct cfg_error *err) {
        _cleanup_free_ char *text = q(json);
        return cfg_load_string(text, strlen(text), "cfg.json", ret, err);
}

static struct cfg *load_ok(const char *json) {
        struct cfg_error err = {.msg = ""};
        struct cfg *c = NULL;
        int r = load(json, &c, &err);
        if (r < 0)
                fail_msg("unexpected error %d: %s", r, err.msg);
        assert_non_null(c);
        return c;
}

static void assert_contains(const char *haystack, const char *needle) {
        if (!strstr(haystack, needle))
                fail_msg("expected \"%s\" in \"%s\"", needle, haystack);
}

/* ---- one case per error class: the message names the file, the JSON path and what was expected */

struct error_case {
        const char *json;
        const char *path;     /* "cfg.json: PATH: " must appear */
        const char *expected; /* and this text */
};

static const struct error_case error_cases[] = {
        /* types and values of match fields */
        {USB("{'vendorId': 1234}"), "usbPassthrough[0].allow[0].vendorId",
         "expected a string of 1 to 4 hex digits, like \"0bda\", got 1234"},
        {USB("{'vendorId': '046d'}, {'vendorId': 'zz'}"), "usbPassthrough[0].allow[1].vendorId",
         "got \"zz\""},
        {USB("{'productId': '12345'}"), "usbPassthrough[0].allow[0].productId", "got \"12345\""},
        {USB("{'productId': '0x12'}"), "usbPassthrough[0].allow[0].productId", "hex digits"},
        {USB("{'productId': ''}"), "usbPassthrough[0].allow[0].productId", "hex digits"},
        {USB("{'interfaceClass': 256}"), "usbPassthrough[0].allow[0].interfaceClass",
         "expected an integer from 0 to 255, got 256"},
        {USB("{'deviceClass': -1}"), "usbPassthrough[0].allow[0].deviceClass", "from 0 to 255, got -1"},
        {USB("{'interfaceProtocol': 1.5}"), "usbPassthrough[0].allow[0].interfaceProtocol", "got 1.5"},
        {USB("{'interfaceSubclass': '3'}"), "usbPassthrough[0].allow[0].interfaceSubclass", "got \"3\""},
        {USB("{'bus': -1}"), "usbPassthrough[0].allow[0].bus", "an integer from 0 to"},
        {USB("{'port': 1e9}"), "usbPassthrough[0].allow[0].port", "an integer from 0 to 255"},
        {USB("{'portPath': '3..2'}"), "usbPassthrough[0].allow[0].portPath", "a USB port path"},
        {USB("{'portPath': '3.0'}"), "usbPassthrough[0].allow[0].portPath", "a USB port path"},
        {USB("{'portPath': 3}"), "usbPassthrough[0].allow[0].portPath", "a USB port path"},
        {USB("{'serial': ''}"), "usbPassthrough[0].allow[0].serial",
         "expected a non-empty string, got \"\""},
        {USB("{'serial': null}"), "usbPassthrough[0].allow[0]: ", "at least one match field"},
        {USB("{'bus': null, 'port': null, 'vendorId': null, 'productId': null}"),
         "usbPassthrough[0].allow[0]: ", "at least one match field"},
        {USB("{'removable': ['fixed', 'sometimes']}"), "usbPassthrough[0].allow[0].removable[1]",
         "got \"sometimes\""},
        {USB("{'removable': []}"), "usbPassthrough[0].allow[0].removable", "a non-empty array"},
        {USB("{'removable': 'fixed'}"), "usbPassthrough[0].allow[0].removable", "a non-empty array"},
        {PCI("{'address': '0000:00:14'}"), "pciPassthrough[0].allow[0].address", "a PCI address like"},
        {PCI("{'address': '00:20.0'}"), "pciPassthrough[0].allow[0].address", "got \"00:20.0\""},
        {PCI("{'deviceProgIf': 300}"), "pciPassthrough[0].allow[0].deviceProgIf", "from 0 to 255"},
        /* regular expressions */
        {USB("{'productName': '('}"), "usbPassthrough[0].allow[0].productName",
         "invalid regular expression \"(\""},
        {USB("{'vendorName': 'a)|(b'}"), "usbPassthrough[0].allow[0].vendorName", "unmatched ')'"},
        {USB("{'vendorName': '(a)\\\\1'}"), "usbPassthrough[0].allow[0].vendorName", "back-references"},
        {USB("{'vendorName': '((a{1,100}){1,100}){1,100}'}"), "usbPassthrough[0].allow[0].vendorName",
         "too costly"},
        {USB("{'productName': ''}"), "usbPassthrough[0].allow[0].productName", "a non-empty string"},
        {USB("{'productName': 'a{99999999999999999999999}'}"), "usbPassthrough[0].allow[0].productName",
         "above 255"},
        /* issue 12: one such pattern cost 1.6 GB and 1.2 s in every helper */
        {USB("{'productName': '.{0,9999}'}"), "usbPassthrough[0].allow[0].productName", "above 255"},
        {USB("{'productName': '.{256}'}"), "usbPassthrough[0].allow[0].productName", "above 255"},
        {USB("{'productName': '.{0,255}.{0,255}.{0,255}.{0,255}.{0,255}'}"),
         "usbPassthrough[0].allow[0].productName", "too costly"},
        {USB("{'productName': '(a|b|c|d){0,255}'}"), "usbPassthrough[0].allow[0].productName", "too costly"},
        {USB("{'productName': '(.{1,50}){0,20}'}"), "usbPassthrough[0].allow[0].productName", "too costly"},
        {USB("{'productName': '(.{0,50}){0,20}'}"), "usbPassthrough[0].allow[0].productName",
         "repeating what can match the empty string"},
        {USB("{'productName': '(a||){90}'}"), "usbPassthrough[0].allow[0].productName",
         "empty alternatives"},
        {EVDEV("{'name': '(^|$)(^|$)(^|$)(^|$)(^|$)'}"), "evdevPassthrough[0].allow[0].name",
         "more than 8 anchors"},
        {USB("{'bus': 1}, {'driverPath': '.{0,255}.{0,255}.{0,255}.{0,255}.{0,255}'}"),
         "usbPassthrough[0].allow[1].driverPath", "too costly"},
        {USB("{'driverPath': '(kernel'}"), "usbPassthrough[0].allow[0].driverPath",
         "invalid regular expression"},
        {USB("{'driverPath': 7}"), "usbPassthrough[0].allow[0].driverPath", "a non-empty string, got 7"},
        {PCI("{'driverPath': '.*/net/.*'}"), "pciPassthrough[0].allow[0].driverPath",
         "belongs to usbPassthrough"},
        {EVDEV("{'name': '[[:nope:]]'}"), "evdevPassthrough[0].allow[0].name", "invalid regular expression"},
        /* rule shape; unknown keys in rules and entries are errors (a typo must not widen a rule) */
        {USB("{'description': 'everything'}"), "usbPassthrough[0].allow[0]: ", "at least one match field"},
        {USB("{'vendorID': 'dead', 'productId': 'c077'}"), "usbPassthrough[0].allow[0].vendorID",
         "unknown key 'vendorID' (did you mean 'vendorId'?)"},
        {USB("{'vendorid': '046d'}"), "usbPassthrough[0].allow[0].vendorid",
         "unknown key 'vendorid' (did you mean 'vendorId'?)"},
        {USB("{'vendorId': '046d', 'colour': 'red'}"), "usbPassthrough[0].allow[0].colour",
         "unknown key 'colour' (the closest known key is '"},
        {SECTION("usbPassthrough",
                 "{'targetVm': 'vm1', 'allow': [{'bus': 1}], 'deny': [{'bus': 1, 'prot': 2}]}"),
         "usbPassthrough[0].deny[0].prot", "(did you mean 'port'?)"},
        {EVDEV("{'name': 'x', 'pathtag': 'y'}"), "evdevPassthrough[0].allow[0].pathtag",
         "did you mean 'pathTag'?"},
        {SECTION("pciPassthrough", "{'targetVM': 'vm1', 'targetVm': 'vm1'}"), "pciPassthrough[0].targetVM",
         "unknown key 'targetVM' (did you mean 'targetVm'?)"},
        {SECTION("usbPassthrough", "{'targetVm': 'vm1', 'alow': []}"), "usbPassthrough[0].alow",
         "did you mean 'allow'?"},
        {"{" VMS ", 'evdevPassthrough': {'targetVm': 'vm1', 'enabled': true}}", "evdevPassthrough.enabled",
         "did you mean 'enable'?"},
        {USB("{'vendorId': '046d', 'vendorId': '046d'}"), "usbPassthrough[0].allow[0].vendorId",
         "duplicate key 'vendorId'"},
        {USB("{'deviceId': '1234'}"), "usbPassthrough[0].allow[0].deviceId",
         "'deviceId' belongs to pciPassthrough; it cannot be used in usbPassthrough"},
        {PCI("{'productName': 'x'}"), "pciPassthrough[0].allow[0].productName", "belongs to usbPassthrough"},
        {EVDEV("{'vendorId': '1234'}"), "evdevPassthrough[0].allow[0].vendorId",
         "belongs to usbPassthrough and pciPassthrough"},
        {EVDEV("{'property': 'ID_INPUT_KEY'}"),
         "evdevPassthrough[0].allow[0]: ", "'property' requires 'value'"},
        {EVDEV("{'value': '1'}"), "evdevPassthrough[0].allow[0]: ", "'value' requires 'property'"},
        {USB("{'vendorId': '1234', 'disable': true, 'enable': true}"),
         "usbPassthrough[0].allow[0]: ", "contradict"},
        {USB("{'vendorId': '1234', 'disable': 'yes'}"), "usbPassthrough[0].allow[0].disable",
         "expected true or false, got \"yes\""},
        {USB("{'vendorId': '1234', 'enable': 1}"), "usbPassthrough[0].allow[0].enable",
         "expected true or false, got 1"},
        {USB("'vendorId'"), "usbPassthrough[0].allow[0]: ", "expected an object, got \"vendorId\""},
        /* entries */
        {SECTION("usbPassthrough", "{'targetVm': 'vm9'}"), "usbPassthrough[0].targetVm",
         "unknown VM \"vm9\""},
        {SECTION("pciPassthrough", "{'targetVm': 'vm1'}, {'targetVm': 42}"), "pciPassthrough[1].targetVm",
         "expected a non-empty string, got 42"},
        {SECTION("usbPassthrough", "{'allowedVms': ['vm1', 'nope']}"), "usbPassthrough[0].allowedVms[1]",
         "unknown VM \"nope\""},
        {SECTION("usbPassthrough", "{'allowedVms': []}"), "usbPassthrough[0].allowedVms",
         "a non-empty array of VM names"},
        {SECTION("usbPassthrough", "{'allowedVms': ['vm1', 'vm1']}"), "usbPassthrough[0].allowedVms[1]",
         "listed twice"},
        {SECTION("usbPassthrough", "{'targetVm': 'vm1', 'allowedVms': ['vm1', 'vm2', 'vm1']}"),
         "usbPassthrough[0].allowedVms[2]", "listed twice"},
        {SECTION("usbPassthrough", "{'targetVm': 'audio', 'allowedVms': ['vm1', 'vm2']}"),
         "usbPassthrough[0].targetVm", "not one of allowedVms"},
        {SECTION("pciPassthrough", "{'allowedVms': ['vm1']}"), "pciPassthrough[0].allowedVms",
         "'allowedVms' belongs to usbPassthrough"},
        {SECTION("usbPassthrough", "{'targetVm': 'vm1', 'pciIommuAddAll': true}"),
         "usbPassthrough[0].pciIommuAddAll", "belongs to pciPassthrough"},
        {SECTION("pciPassthrough", "{'targetVm': 'vm1', 'qemuUseRootBus': 'yes'}"),
         "pciPassthrough[0].qemuUseRootBus", "true or false"},
        {SECTION("pciPassthrough", "{'targetVm': 'vm1', 'autoOvmf': 1}"), "pciPassthrough[0].autoOvmf",
         "expected true or false, got 1"},
        {SECTION("usbPassthrough", "{'targetVm': 'vm1', 'autoOvmf': true}"), "usbPassthrough[0].autoOvmf",
         "belongs to pciPassthrough"},
        {SECTION("usbPassthrough", "{'targetVm': 'vm1', 'skipOnSuspend': 'no'}"),
         "usbPassthrough[0].skipOnSuspend", "true or false"},
        {SECTION("usbPassthrough", "{'targetVm': 'vm1', 'enable': false, 'disable': false}"),
         "usbPassthrough[0]: ", "contradict"},
        {SECTION("usbPassthrough", "{'targetVm': 'vm1', 'allow': {}}"), "usbPassthrough[0].allow",
         "expected an array of rules, got an object"},
        {SECTION("usbPassthrough", "{'targetVm': 'vm1', 'deny': [{'bus': 1}, {}]}"),
         "usbPassthrough[0].deny[1]: ", "at least one match field"},
        {SECTION("usbPassthrough", "[]"), "usbPassthrough[0]: ", "expected an object, got an array"},
        {SECTION("usbPassthrough", "{'targetVm': 'vm1', 'tag': ''}"), "usbPassthrough[0].tag",
         "non-empty string"},
        {"{" VMS ", 'usbPassthrough': {}}",
         "usbPassthrough: ", "expected an array of entries, got an object"},
        {"{" VMS ", 'evdevPassthrough': 'vm1'}", "evdevPassthrough: ", "or the older object form"},
        /* legacy evdev object */
        {"{" VMS ", 'evdevPassthrough': {'targetVm': 'vm1', 'allow': []}}", "evdevPassthrough.allow",
         "takes no rules"},
        {"{" VMS ", 'evdevPassthrough': {'targetVm': 'ghost'}}", "evdevPassthrough.targetVm",
         "unknown VM \"ghost\""},
        {"{" VMS ", 'evdevPassthrough': {'targetVm': 'vm1', 'allowedVms': ['vm1']}}",
         "evdevPassthrough.allowedVms", "belongs to usbPassthrough"},
        /* vms */
        {"{'vms': [{'name': 'a', 'type': 'qemu', 'socket': '/s'}, {'name': 'a', 'type': 'qemu', 'socket': "
         "'/t'}]}",
         "vms[1].name", "duplicate VM name 'a'"},
        {"{'vms': [{'name': 'a', 'type': 'kvm', 'socket': '/s'}]}", "vms[0].type",
         "expected \"qemu\", \"crosvm\" or \"cloud-hypervisor\", got \"kvm\""},
        {"{'vms': [{'name': 'a', 'type': 'qemu'}]}", "vms[0]: ", "missing required key 'socket'"},
        {"{'vms': [{'type': 'qemu', 'socket': '/s'}]}", "vms[0]: ", "missing required key 'name'"},
        {"{'vms': [{'name': 'a b', 'type': 'qemu', 'socket': '/s'}]}", "vms[0].name", "letters, digits"},
        {"{'vms': [{'name': 'a', 'type': 'qemu', 'socket': ''}]}", "vms[0].socket", "non-empty string"},
        {"{'vms': {'name': 'a'}}", "vms: ", "expected an array of VMs"},
        /* general */
        {GENERAL("'qmpTimeoutMs': 0"), "general.qmpTimeoutMs",
         "expected an integer from 1 to 600000, got 0"},
        {GENERAL("'attachRetries': 101"), "general.attachRetries", "from 0 to 100, got 101"},
        {GENERAL("'hostRequiredMounts': ['/data', 'home']"), "general.hostRequiredMounts[1]",
         "expected an absolute path, got \"home\""},
        {GENERAL("'hostRequiredMounts': '/data'"), "general.hostRequiredMounts",
         "an array of absolute paths"},
        {GENERAL("'database': 'state.db'"), "general.database", "an absolute path"},
        {GENERAL("'lockDir': ''"), "general.lockDir", "non-empty string"},
        {GENERAL("'crosvm': false"), "general.crosvm", "got false"},
        {"{'general': []}", "general: ", "expected an object, got an array"},
        {GENERAL("'modulesDir': 'lib/modules'"), "general.modulesDir", "an absolute path"},
        {GENERAL("'ovmfCode': 'OVMF_CODE.fd'"), "general.ovmfCode",
         "an absolute path, got \"OVMF_CODE.fd\""},
        {GENERAL("'ovmfVars': 3"), "general.ovmfVars", "got 3"},
        {GENERAL("'statePath': ''"), "general.statePath", "non-empty string"},
        {GENERAL("'persistency': 'yes'"), "general.persistency", "true or false"},
        {GENERAL("'api': true"), "general.api: ", "expected an object, got true"},
        {GENERAL("'api': {'transports': ['udp']}"), "general.api.transports[0]",
         "expected \"unix\", \"vsock\" or \"tcp\", got \"udp\""},
        {GENERAL("'api': {'transports': 'unix'}"), "general.api.transports", "an array of"},
        {GENERAL("'api': {'transports': ['unix', 'unix']}"), "general.api.transports[1]", "listed twice"},
        {GENERAL("'api': {'port': 0}"), "general.api.port", "expected an integer from 1 to"},
        {GENERAL("'api': {'transports': ['tcp'], 'port': 70000}"), "general.api.port",
         "from 1 to 65535, got 70000"},
        {GENERAL("'api': {'unixSocketMode': 660}"), "general.api.unixSocketMode",
         "a string of octal digits, like \"0660\", got 660"},
        {GENERAL("'api': {'unixSocketMode': '0668'}"), "general.api.unixSocketMode", "octal digits"},
        {GENERAL("'api': {'unixSocket': 'vhotplug.sock'}"), "general.api.unixSocket", "an absolute path"},
        {GENERAL("'api': {'allowedCids': [3, '4']}"), "general.api.allowedCids[1]", "got \"4\""},
        {GENERAL("'api': {'allowedCids': [-1]}"), "general.api.allowedCids[0]", "from 0 to 4294967295"},
        {GENERAL("'api': {'unixSocketUser': ''}"), "general.api.unixSocketUser", "non-empty string"},
        {GENERAL("'api': {'enable': 'true'}"), "general.api.enable", "true or false"},
        {GENERAL("'api': {'host': 1}"), "general.api.host", "got 1"},
        /* usbAuthorization: strict, its hostAllow list holds USB rules */
        {"{'usbAuthorization': {'enable': 'yes'}}", "usbAuthorization.enable",
         "expected true or false, got \"yes\""},
        {"{'usbAuthorization': {'enable': true, 'deauthorizeUnmached': true}}",
         "usbAuthorization.deauthorizeUnmached", "did you mean 'deauthorizeUnmatched'?"},
        {"{'usbAuthorization': {'deauthorizeUnmatched': 1}}", "usbAuthorization.deauthorizeUnmatched",
         "true or false"},
        {"{'usbAuthorization': {'hostAllow': {}}}", "usbAuthorization.hostAllow", "an array of rules"},
        {"{'usbAuthorization': {'hostAllow': [{'vendorID': '067b'}]}}",
         "usbAuthorization.hostAllow[0].vendorID", "did you mean 'vendorId'?"},
        {"{'usbAuthorization': {'hostAllow': [{}]}}",
         "usbAuthorization.hostAllow[0]: ", "at least one match field"},
        {"{'usbAuthorization': {'hostAllow': [{'address': '00:02.0'}]}}",
         "usbAuthorization.hostAllow[0].address", "belongs to pciPassthrough"},
        /* acpiPassthrough */
        {"{" VMS ", 'acpiPassthrough': {}}", "acpiPassthrough: ", "an array of entries"},
        {"{" VMS ", 'acpiPassthrough': [{'targetVm': 'vm9'}]}", "acpiPassthrough[0].targetVm",
         "unknown VM \"vm9\""},
        {"{" VMS ", 'acpiPassthrough': [{'targetVm': 'vm1', 'allow': [{'setUser': 'microvm'}]}]}",
         "acpiPassthrough[0].allow[0]: ", "missing required key 'acpiTable'"},
        {"{" VMS ", 'acpiPassthrough': [{'targetVm': 'vm1', 'allow': [{'acpiTable': 'NHLT'}]}]}",
         "acpiPassthrough[0].allow[0].acpiTable", "an absolute path"},
        {"{" VMS
         ", 'acpiPassthrough': [{'targetVm': 'vm1', 'allow': [{'acpiTable': '/t', 'setuser': 'x'}]}]}",
         "acpiPassthrough[0].allow[0].setuser", "did you mean 'setUser'?"},
        {"{" VMS ", 'acpiPassthrough': [{'targetVm': 'vm1', 'setGroup': 'kvm'}]}",
         "acpiPassthrough[0].setGroup", "give 'acpiTable' beside it"},
        {"{" VMS ", 'acpiPassthrough': [{'targetVm': 'vm1', 'acpiTabel': '/t'}]}",
         "acpiPassthrough[0].acpiTabel", "did you mean 'acpiTable'?"},
        {"{" VMS ", 'acpiPassthrough': [{'targetVm': 'vm1', 'acpiTable': '/t', 'setUser': 5}]}",
         "acpiPassthrough[0].setUser", "got 5"},
        {"{" VMS ", 'acpiPassthrough': [{'targetVm': 'vm1', 'allow': [{'acpiTable': '/t', 'disable': 0}]}]}",
         "acpiPassthrough[0].allow[0].disable", "true or false"},
        /* top level */
        {"{'usbAuthorization': true}", "usbAuthorization: ", "expected an object, got true"},
        {"{'vms': [], 'vms': []}", "vms: ", "duplicate key 'vms'"},
};

static void test_error_cases(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(error_cases); i++) {
                const struct error_case *t = &error_cases[i];
                struct cfg_error err = {.msg = ""};
                struct cfg *c = NULL;
                char prefix[256];

                int r = load(t->json, &c, &err);
                if (r != -EINVAL)
                        fail_msg("case %zu (%s): expected -EINVAL, got %d (%s)", i, t->json, r, err.msg);
                assert_null(c);
                snprintf(prefix, sizeof(prefix), "cfg.json: %s", t->path);
                if (strncmp(err.msg, prefix, strlen(prefix)) != 0)
                        fail_msg("case %zu: expected the message to start with \"%s\": \"%s\"", i, prefix,
                                 err.msg);
                assert_contains(err.msg, t->expected);
        }
}

/* ---- JSON syntax errors: FILE:LINE:COL */

static void test_syntax_errors(void **state) {
        static const struct {
                const char *text, *expected;
        } cases[] = {
                {"{\n  \"vms\": [\n    {\"name\": tru}\n  ]\n}",
                 "cfg.json:3:14: JSON syntax error near \"tru}"},
                {"{\n  \"a\": 1\n  \"b\": 2\n}", "cfg.json:3:3: JSON syntax error near \"\\\"b\\\": 2"},
                {"{\"vms\": [1, 2,]}", "cfg.json:1:15: JSON syntax error"},
                {"{\"vms\": [",
                 "cfg.json:1:9: JSON syntax error near \"[\""}, /* cJSON points at the unclosed array */
                {"{} {}", "cfg.json:1:4: unexpected text after the JSON value"},
                {"  \n ", "cfg.json:2:2: empty file"},
                {"", "cfg.json:1:1: empty file"},
                {"{\"é\": [}", "cfg.json:1:8: JSON syntax error"}, /* columns count characters */
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct cfg_error err = {.msg = ""};
                struct cfg *c = NULL;
                int r = cfg_load_string(cases[i].text, strlen(cases[i].text), "cfg.json", &c, &err);
                assert_int_equal(r, -EINVAL);
                assert_null(c);
                if (strncmp(err.msg, cases[i].expected, strlen(cases[i].expected)) != 0)
                        fail_msg("case %zu: expected \"%s...\", got \"%s\"", i, cases[i].expected, err.msg);
        }

        /* A NUL byte inside the text is refused, not silently cut. */
        struct cfg_error err;
        struct cfg *c = NULL;
        static const char with_nul[] = "{\"vms\": []}\0{\"x\": 1}";
        assert_int_equal(cfg_load_string(with_nul, sizeof(with_nul) - 1, "cfg.json", &c, &err), -EINVAL);
        assert_contains(err.msg, "cfg.json:1:12: NUL byte");

        /* Nesting deeper than cJSON allows is a syntax error, not a crash. */
        size_t depth = 5000;
        _cleanup_free_ char *deep = malloc(2 * depth + 1);
        assert_non_null(deep);
        memset(deep, '[', depth);
        memset(deep + depth, ']', depth);
        deep[2 * depth] = '\0';
        assert_int_equal(cfg_load_string(deep, 2 * depth, "deep.json", &c, &err), -EINVAL);
        assert_contains(err.msg, "deep.json:1:");
}

/* ---- warnings: unknown keys with the path and a suggestion; ineffective keys */

static void assert_one_warning(const char *json, const char *expected) {
        struct cfg *c = load_ok(json);
        if (c->n_warnings != 1)
                fail_msg("expected 1 warning for %s, got %zu", json, c->n_warnings);
        if (strcmp(c->warnings[0], expected) != 0)
                fail_msg("expected warning \"%s\", got \"%s\"", expected, c->warnings[0]);
        cfg_free(c);
}

static void test_warnings(void **state) {
        /* Outside rules, entries and usbAuthorization, unknown keys are warnings (other deployments'). */
        assert_one_warning("{'usbPasthrough': []}", "cfg.json: usbPasthrough: unknown key 'usbPasthrough' "
                                                    "(did you mean 'usbPassthrough'?), ignoring");
        assert_one_warning("{'vms': [{'name': 'a', 'type': 'qemu', 'socket': '/s', 'memory': 2048}]}",
                           "cfg.json: vms[0].memory: unknown key 'memory', ignoring");
        assert_one_warning(
                GENERAL("'lockdir': '/run/x'"),
                "cfg.json: general.lockdir: unknown key 'lockdir' (did you mean 'lockDir'?), ignoring");
        assert_one_warning(
                GENERAL("'api': {'enable': false, 'prot': 2000}"),
                "cfg.json: general.api.prot: unknown key 'prot' (did you mean 'port'?), ignoring");

        /* Entries that claim nothing: accepted (the older daemon skipped them), with a warning. */
        assert_one_warning(
                SECTION("usbPassthrough", "{'allow': [{'bus': 1}]}"),
                "cfg.json: usbPassthrough[0]: no 'targetVm' or 'allowedVms': this entry claims nothing");
        assert_one_warning(
                SECTION("pciPassthrough", "{'description': 'GPU', 'allow': [{'address': '00:02.0'}]}"),
                "cfg.json: pciPassthrough[0]: no 'targetVm': this entry claims nothing");
        assert_one_warning("{" VMS ", 'evdevPassthrough': {'disable': false}}",
                           "cfg.json: evdevPassthrough: no 'targetVm': this entry claims nothing");
        assert_one_warning(SECTION("usbPassthrough", "{'targetVm': 'vm1', 'allow': []}"),
                           "cfg.json: usbPassthrough[0]: empty 'allow' list: this entry claims nothing");
        assert_one_warning(SECTION("usbPassthrough", "{'targetVm': 'vm1', 'deny': [{'bus': 1}]}"),
                           "cfg.json: usbPassthrough[0]: no 'allow' list: this entry claims nothing");
        assert_one_warning("{" VMS ", 'acpiPassthrough': [{'allow': [{'acpiTable': '/t'}]}]}",
                           "cfg.json: acpiPassthrough[0]: no 'targetVm': this entry hands out no table");
        /* A disabled entry is not worth a warning. */
        struct cfg *c = load_ok(SECTION("usbPassthrough", "{'disable': true, 'allow': []}"));
        assert_int_equal(c->n_warnings, 0);
        cfg_free(c);

        assert_one_warning(
                "{'vms': [{'name': 'ch', 'type': 'cloud-hypervisor', 'socket': '/run/ch.sock'}]}",
                "cfg.json: vms[0].type: cloud-hypervisor VMs cannot be hot-plugged: accepted for cold-plug "
                "arguments (vhotplug-api); devices claimed for 'ch' stay on the host");
        assert_one_warning(
                GENERAL("'api': {'transports': ['tcp'], 'port': 8000}"),
                "cfg.json: general.api: the \"tcp\" transport is unauthenticated: anyone who reaches "
                "127.0.0.1:8000 controls device assignment");
        assert_one_warning(GENERAL("'api': {'port': 8000}"),
                           "cfg.json: general.api: no 'transports': the API listens nowhere");

        /* Warnings are capped: a file of junk keys cannot flood the log. */
        struct cfg_error err;
        size_t n = 500, len = 0;
        _cleanup_free_ char *junk = malloc(n * 32 + 8);
        assert_non_null(junk);
        len += (size_t)sprintf(junk, "{");
        for (size_t i = 0; i < n; i++)
                len += (size_t)sprintf(junk + len, "%s\"junk%zu\": %zu", i ? "," : "", i, i);
        sprintf(junk + len, "}");
        c = NULL;
        assert_int_equal(cfg_load_string(junk, strlen(junk), "junk.json", &c, &err), 0);
        assert_int_equal(c->n_warnings, CFG_MAX_WARNINGS + 1);
        assert_contains(c->warnings[CFG_MAX_WARNINGS], "more than 100 warnings");
        cfg_free(c);
}

/* ---- notes: what is accepted but works elsewhere, and where our AND differs from the older daemon */

static void assert_notes(const char *json, const char *const *expected) {
        struct cfg *c = load_ok(json);
        size_t n = 0;
        while (expected[n])
                n++;
        for (size_t i = 0; i < c->n_notes && i < n; i++)
                if (strcmp(c->notes[i], expected[i]) != 0)
                        fail_msg("note %zu of %s: expected \"%s\", got \"%s\"", i, json, expected[i],
                                 c->notes[i]);
        if (c->n_notes != n)
                fail_msg("expected %zu notes for %s, got %zu (first: %s)", n, json, c->n_notes,
                         c->n_notes ? c->notes[0] : "none");
        assert_int_equal(c->n_warnings, 0);
        cfg_free(c);
}

#define NOTES(...)                                                                                          \
        (const char *const[]) {                                                                             \
                __VA_ARGS__, NULL                                                                           \
        }

static void test_notes(void **state) {
        assert_notes(
                GENERAL("'modprobe': '/nix/store/x/bin/modprobe', 'modinfo': '/nix/store/x/bin/modinfo'"),
                NOTES("cfg.json: general.modprobe: not used: kernel modules are looked up with libkmod in "
                      "general.modulesDir (default /lib/modules/`uname -r`)",
                      "cfg.json: general.modinfo: not used: kernel modules are looked up with libkmod in "
                      "general.modulesDir (default /lib/modules/`uname -r`)"));
        assert_notes(GENERAL("'api': {'enable': true, 'transports': ['vsock', 'unix'], 'allowedCids': [3]}"),
                     NOTES("cfg.json: general.api: accepted; used by vhotplug-api (its sockets are written "
                           "by vhotplug-generator)"));
        assert_notes(GENERAL("'api': {'enable': false, 'transports': ['tcp']}"),
                     (const char *const[]){NULL});
        /* Keys that simply work need no note: cold-plug, suspend and their files. */
        assert_notes(GENERAL("'ovmfCode': '/a/OVMF_CODE.fd', 'ovmfVars': '/a/OVMF_VARS.fd'"),
                     (const char *const[]){NULL});
        assert_notes(
                SECTION("pciPassthrough",
                        "{'targetVm': 'vm1', 'skipOnSuspend': true, 'allow': [{'deviceClass': 3}]},"
                        "{'targetVm': 'vm2', 'skipOnSuspend': true, 'autoOvmf': true, 'crosvmUseRootBus': "
                        "true, 'allow': [{'deviceClass': 2}]}"),
                (const char *const[]){NULL});
        assert_notes("{" VMS ", 'acpiPassthrough': [{'targetVm': 'vm1', 'allow': [{'acpiTable': '/t'}]}]}",
                     (const char *const[]){NULL});
        /* Keys that act otherwise than in the older daemon say how. */
        assert_notes(GENERAL("'statePath': '/var/lib/vhotplug/vhotplug.state', 'persistency': true"),
                     NOTES("cfg.json: general.statePath: the older daemon's state file: its choices are "
                           "imported once into general.database by vhotplug-reconcile; the file is never "
                           "written",
                           "cfg.json: general.persistency: choices are always kept in general.database; "
                           "false only turns off the statePath import"));
        /* usbAuthorization is carried out by the helper and reconcile: nothing to note. */
        struct cfg *auth =
                load_ok("{'usbAuthorization': {'enable': true, 'hostAllow': [{'interfaceClass': 3}]}}");
        assert_int_equal(auth->n_notes, 0);
        cfg_free(auth);

        /* AND of a rule's fields, where the older daemon accepted any one group. */
        assert_notes(PCI("{'address': '0000:00:14.3', 'vendorId': '8086', 'deviceId': 'a0f0'}"),
                     NOTES("cfg.json: pciPassthrough[0].allow[0]: vendorId+deviceId, address are combined "
                           "with AND: all of "
                           "them must hold (the older daemon accepted a device when any one of them held)"));
        assert_notes(USB("{'vendorId': '046d', 'productId': 'c52b', 'productName': 'Unifying'}"),
                     NOTES("cfg.json: usbPassthrough[0].allow[0]: vendorId+productId, productName are "
                           "combined with AND: "
                           "all of them must hold (the older daemon accepted a device when any one of them "
                           "held)"));
        assert_notes(USB("{'vendorName': 'Logitech', 'productName': 'Unifying'}"),
                     NOTES("cfg.json: usbPassthrough[0].allow[0]: vendorName, productName are combined with "
                           "AND: all of "
                           "them must hold (the older daemon accepted a device when any one of them held)"));
        assert_notes(SECTION("usbPassthrough",
                             "{'targetVm': 'vm1', 'allow': [{'bus': 1}], 'deny': [{'vendorId': '046d'}]}"),
                     NOTES("cfg.json: usbPassthrough[0].allow[0]: bus alone matches (the older daemon "
                           "ignored it without port)",
                           "cfg.json: usbPassthrough[0].deny[0]: vendorId alone matches every product of "
                           "that vendor (the "
                           "older daemon ignored it without productId)"));
        assert_notes(PCI("{'deviceId': 'a0f0'}"), NOTES("cfg.json: pciPassthrough[0].allow[0]: deviceId "
                                                        "alone matches that product id of every vendor "
                                                        "(the older daemon ignored it without vendorId)"));
        /* One group of fields: the same result either way, no note. */
        assert_notes(USB("{'interfaceClass': 3, 'interfaceProtocol': 1}, {'vendorId': '046d', 'productId': "
                         "'c52b'},"
                         "{'driverPath': '.*/kernel/drivers/net/usb/.*'}, {'removable': ['fixed'], "
                         "'interfaceClass': 14}"),
                     (const char *const[]){NULL});

        /* Capped like warnings. */
        size_t n = 300, len = 0;
        _cleanup_free_ char *many = malloc(n * 48 + 256);
        assert_non_null(many);
        len += (size_t)sprintf(many,
                               "{\"vms\": [{\"name\": \"v\", \"type\": \"qemu\", \"socket\": \"/s\"}], "
                               "\"usbPassthrough\": [{\"targetVm\": \"v\", \"allow\": [");
        for (size_t i = 0; i < n; i++)
                len += (size_t)sprintf(many + len, "%s{\"vendorId\": \"%04zx\"}", i ? "," : "", i);
        sprintf(many + len, "]}]}");
        struct cfg_error err;
        struct cfg *c = NULL;
        assert_int_equal(cfg_load_string(many, strlen(many), "many.json", &c, &err), 0);
        assert_int_equal(c->n_notes, CFG_MAX_NOTES + 1);
        assert_contains(c->notes[CFG_MAX_NOTES], "more than 100 notes");
        cfg_free(c);
}

/* ---- what a valid configuration becomes */

static const char *const sample_path = "tests/data/config/seed-sample.json";

static void test_seed_sample(void **state) {
        struct cfg_error err = {.msg = ""};
        struct cfg *c = NULL;

        int r = cfg_load(sample_path, CFG_NO_STRICT_PERMS, &c, &err);
        if (r < 0)
                fail_msg("%s", err.msg);
        assert_int_equal(c->n_warnings, 0);
        assert_string_equal(c->path, sample_path);

        assert_int_equal(c->n_vms, 1);
        assert_string_equal(c->vms[0].name, "vm1");
        assert_int_equal(c->vms[0].type, VMM_QEMU);
        assert_string_equal(c->vms[0].socket, "/tmp/qmp-socket1");

        assert_int_equal(c->n_entries[DEV_USB], 1);
        const struct cfg_entry *e = &c->entries[DEV_USB][0];
        assert_string_equal(e->description, "Devices for VM1");
        assert_true(e->enabled);
        assert_int_equal(e->n_vms, 1);
        assert_ptr_equal(e->vms[0], &c->vms[0]);
        assert_int_equal(e->n_allow, 3);
        assert_int_equal(e->n_deny, 2);
        assert_int_equal(e->allow[0].fields, RF_IF_CLASS | RF_IF_PROTOCOL);
        assert_int_equal(e->allow[0].if_class, 3);
        assert_int_equal(e->allow[0].if_protocol, 2);
        assert_string_equal(e->allow[0].description, "HID Mouse");
        assert_true(e->allow[0].enabled);
        assert_int_equal(e->allow[1].fields, RF_PRODUCT_NAME);
        /* ".*ethernet.*": case-insensitive, anywhere. */
        assert_int_equal(regexec(&e->allow[1].product_name, "AX88179 Gigabit Ethernet", 0, NULL, 0), 0);
        assert_int_not_equal(regexec(&e->allow[1].product_name, "Unifying Receiver", 0, NULL, 0), 0);
        assert_int_equal(e->allow[2].vendor_id, 0x067b);
        assert_int_equal(e->allow[2].product_id, 0x23a3);
        assert_false(e->allow[2].enabled);
        assert_int_equal(e->deny[0].vendor_id, 0x046d);
        assert_int_equal(e->deny[0].product_id, 0xc52b);
        assert_int_equal(e->deny[1].fields, RF_VENDOR_ID | RF_PRODUCT_ID);

        assert_int_equal(c->n_entries[DEV_PCI], 1);
        e = &c->entries[DEV_PCI][0];
        assert_int_equal(e->allow[0].fields, RF_ADDRESS);
        assert_string_equal(e->allow[0].address, "0000:00:14.3");
        assert_int_equal(e->allow[1].vendor_id, 0x8086);
        assert_int_equal(e->allow[1].product_id, 0xa7a1);

        /* The object form of evdevPassthrough: one disabled entry for every input device. */
        assert_int_equal(c->n_entries[DEV_EVDEV], 1);
        e = &c->entries[DEV_EVDEV][0];
        assert_true(e->legacy_all_inputs);
        assert_false(e->enabled);
        assert_int_equal(e->n_allow, 0);
        assert_ptr_equal(e->vms[0], &c->vms[0]);

        /* Defaults. */
        assert_string_equal(c->general.database, CFG_DEFAULT_DATABASE);
        assert_string_equal(c->general.crosvm, CFG_DEFAULT_CROSVM);
        assert_string_equal(c->general.lock_dir, CFG_DEFAULT_LOCK_DIR);
        assert_int_equal(c->general.qmp_timeout_ms, CFG_DEFAULT_QMP_TIMEOUT_MS);
        assert_int_equal(c->general.attach_retries, CFG_DEFAULT_ATTACH_RETRIES);
        assert_int_equal(c->general.n_host_mounts, 3);
        assert_string_equal(c->general.host_mounts[0], "/");
        assert_string_equal(c->general.host_mounts[1], "/boot");
        assert_string_equal(c->general.host_mounts[2], "/usr");
        cfg_free(c);
}

static void test_example_config(void **state) {
        struct cfg_error err = {.msg = ""};
        struct cfg *c = NULL;

        int r = cfg_load("examples/vhotplug.conf", CFG_NO_STRICT_PERMS, &c, &err);
        if (r < 0)
                fail_msg("%s", err.msg);
        for (size_t i = 0; i < c->n_warnings; i++)
                print_error("unexpected warning: %s\n", c->warnings[i]);
        assert_int_equal(c->n_warnings, 0);
        assert_int_equal(c->n_vms, 3);
        assert_int_equal(cfg_find_vm(c, "audio-vm")->type, VMM_CROSVM);
        assert_int_equal(c->n_entries[DEV_USB], 4);
        assert_int_equal(c->n_entries[DEV_PCI], 1);
        assert_int_equal(c->n_entries[DEV_EVDEV], 1);
        /* targetVm is the default among allowedVms. */
        const struct cfg_entry *serial = &c->entries[DEV_USB][2];
        assert_int_equal(serial->n_vms, 2);
        assert_string_equal(serial->vms[0]->name, "gui-vm");
        assert_string_equal(serial->vms[1]->name, "net-vm");
        assert_true(c->entries[DEV_PCI][0].iommu_add_all);
        assert_int_equal(c->general.n_host_mounts, 4);
        assert_string_equal(c->general.host_mounts[3], "/var/lib/vms");
        /* Shipped disabled: copied to /etc as it is, it gives no device to any VM. */
        for (int k = 0; k < DEV_KIND_MAX; k++)
                for (size_t i = 0; i < c->n_entries[k]; i++)
                        if (c->entries[k][i].enabled)
                                fail_msg("examples/vhotplug.conf: entry %zu of section %d is enabled", i, k);
        cfg_free(c);
        c = NULL;

        /* Every entry enabled, as after editing ("enable": true for "disable": true): no warning. */
        FILE *f = fopen("examples/vhotplug.conf", "r");
        _cleanup_free_ char *text = malloc(1 << 16);
        size_t len, n = 0;
        char *p;

        assert_non_null(f);
        assert_non_null(text);
        len = fread(text, 1, (1 << 16) - 1, f);
        fclose(f);
        text[len] = '\0';
        for (p = text; (p = strstr(p, "\"disable\": true")); n++)
                memcpy(p, "\"enable\":  true", strlen("\"disable\": true")); /* same length */
        assert_int_equal(n, 6);
        r = cfg_load_string(text, len, "enabled.json", &c, &err);
        if (r < 0)
                fail_msg("%s", err.msg);
        assert_int_equal(c->n_warnings, 0);
        for (int k = 0; k < DEV_KIND_MAX; k++)
                for (size_t i = 0; i < c->n_entries[k]; i++)
                        assert_true(c->entries[k][i].enabled);
        cfg_free(c);
}

static void test_fields(void **state) {
        struct cfg *c = load_ok(
                USB("{'vendorId': '0BDA', 'productId': 'a', 'portPath': '03.2.10', 'bus': 3, 'port': 2,"
                    " 'removable': ['Fixed', 'unknown'], 'serial': 'A\\'B', 'vendorName': 'Logitech',"
                    " 'deviceClass': 239, 'deviceSubclass': 2, 'deviceProtocol': 1,"
                    " 'interfaceClass': 0, 'interfaceSubclass': 255, 'interfaceProtocol': 2}"));
        const struct cfg_rule *r = &c->entries[DEV_USB][0].allow[0];
        assert_int_equal(r->vendor_id, 0x0bda);
        assert_int_equal(r->product_id, 0x000a);
        assert_string_equal(r->port_path, "3.2.10");
        assert_int_equal(r->bus, 3);
        assert_int_equal(r->port, 2);
        assert_int_equal(r->removable, (1u << DEV_REMOVABLE_FIXED) | (1u << DEV_REMOVABLE_UNKNOWN));
        assert_string_equal(r->serial, "A\"B");
        assert_int_equal(r->dev_class, 239);
        assert_int_equal(r->if_class, 0);
        assert_int_equal(r->if_subclass, 255);
        /* Anchored at the start only, case-insensitive. */
        assert_int_equal(regexec(&r->vendor_name, "logitech, Inc.", 0, NULL, 0), 0);
        assert_int_not_equal(regexec(&r->vendor_name, "Not Logitech", 0, NULL, 0), 0);
        assert_int_equal(r->fields, RF_VENDOR_ID | RF_PRODUCT_ID | RF_PORT_PATH | RF_BUS | RF_PORT |
                                            RF_REMOVABLE | RF_SERIAL | RF_VENDOR_NAME | RF_DEV_CLASS |
                                            RF_DEV_SUBCLASS | RF_DEV_PROTOCOL | RF_IF_CLASS |
                                            RF_IF_SUBCLASS | RF_IF_PROTOCOL);
        cfg_free(c);

        /* The anchor covers every alternative; brackets and escaped parentheses are literal. */
        c = load_ok(USB("{'productName': 'Hub|Mouse'}, {'productName': '[)(]x\\\\)'}"));
        r = &c->entries[DEV_USB][0].allow[0];
        assert_int_equal(regexec(&r->product_name, "mouse 2", 0, NULL, 0), 0);
        assert_int_not_equal(regexec(&r->product_name, "USB Mouse", 0, NULL, 0), 0);
        r = &c->entries[DEV_USB][0].allow[1];
        assert_int_equal(regexec(&r->product_name, "(x)", 0, NULL, 0), 0);
        assert_int_not_equal(regexec(&r->product_name, "x)", 0, NULL, 0), 0);
        cfg_free(c);

        c = load_ok(PCI("{'address': '00:1F.3', 'deviceClass': 4, 'deviceSubclass': 3, 'deviceProgIf': 0},"
                        "{'vendorId': '8086', 'deviceId': 'A0F0'}"));
        r = &c->entries[DEV_PCI][0].allow[0];
        assert_string_equal(r->address, "0000:00:1f.3");
        assert_int_equal(r->fields, RF_ADDRESS | RF_DEV_CLASS | RF_DEV_SUBCLASS | RF_DEV_PROTOCOL);
        assert_int_equal(c->entries[DEV_PCI][0].allow[1].product_id, 0xa0f0);
        cfg_free(c);

        c = load_ok(EVDEV("{'name': 'AT Translated', 'pathTag': 'platform-i8042', 'property': "
                          "'ID_INPUT_KEYBOARD', 'value': '1'}"));
        r = &c->entries[DEV_EVDEV][0].allow[0];
        assert_int_equal(r->fields, RF_NAME | RF_PATH_TAG | RF_PROPERTY);
        assert_string_equal(r->property, "ID_INPUT_KEYBOARD");
        assert_string_equal(r->value, "1");
        assert_int_equal(regexec(&r->name, "AT Translated Set 2 keyboard", 0, NULL, 0), 0);
        assert_false(c->entries[DEV_EVDEV][0].legacy_all_inputs);
        cfg_free(c);

        c = load_ok(
                SECTION("pciPassthrough",
                        "{'targetVm': 'vm2', 'tag': 'wifi', 'skipOnSuspend': true, 'pciIommuAddAll': true,"
                        " 'pciIommuSkipIfShared': true, 'qemuUseRootBus': false}"));
        const struct cfg_entry *e = &c->entries[DEV_PCI][0];
        assert_string_equal(e->tag, "wifi");
        assert_true(e->skip_on_suspend && e->iommu_add_all && e->iommu_skip_if_shared);
        assert_false(e->use_root_bus);
        assert_string_equal(e->vms[0]->name, "vm2");
        assert_null(e->allow);
        cfg_free(c);

        c = load_ok(GENERAL("'database': '/srv/state.db', 'crosvm': '/opt/crosvm', 'lockDir': '/run/vhp', "
                            "'qmpTimeoutMs': 600000,"
                            " 'attachRetries': 0, 'hostRequiredMounts': ['/boot/', '/var/lib/vms', "
                            "'/var/lib/vms', '/']"));
        assert_string_equal(c->general.database, "/srv/state.db");
        assert_string_equal(c->general.crosvm, "/opt/crosvm");
        assert_string_equal(c->general.lock_dir, "/run/vhp");
        assert_int_equal(c->general.qmp_timeout_ms, 600000);
        assert_int_equal(c->general.attach_retries, 0);
        assert_int_equal(c->general.n_host_mounts, 4);
        assert_string_equal(c->general.host_mounts[3], "/var/lib/vms");
        cfg_free(c);
}

static void test_order_and_lookup(void **state) {
        struct cfg *c = load_ok("{" VMS ", 'usbPassthrough': ["
                                "  {'targetVm': 'vm2', 'allow': [{'bus': 1}, {'bus': 2}, {'bus': 3}]},"
                                "  {'allowedVms': ['audio', 'vm1'], 'deny': [{'port': 4}]},"
                                "  {'targetVm': 'vm1', 'allowedVms': ['audio', 'vm2', 'vm1']}]}");
        assert_int_equal(c->n_entries[DEV_USB], 3);
        const struct cfg_entry *e = c->entries[DEV_USB];
        for (int i = 0; i < 3; i++)
                assert_int_equal(e[0].allow[i].bus, i + 1);
        assert_int_equal(e[1].n_vms, 2);
        assert_string_equal(e[1].vms[0]->name, "audio");
        assert_string_equal(e[1].vms[1]->name, "vm1");
        assert_int_equal(e[1].deny[0].port, 4);
        assert_int_equal(e[2].n_vms, 3);
        assert_string_equal(e[2].vms[0]->name, "vm1");
        assert_string_equal(e[2].vms[1]->name, "audio");
        assert_string_equal(e[2].vms[2]->name, "vm2");

        assert_ptr_equal(cfg_find_vm(c, "vm2"), &c->vms[1]);
        assert_null(cfg_find_vm(c, "VM2"));
        assert_null(cfg_find_vm(c, NULL));
        assert_string_equal(cfg_section_name(DEV_USB), "usbPassthrough");
        assert_string_equal(cfg_section_name(DEV_PCI), "pciPassthrough");
        assert_string_equal(cfg_section_name(DEV_EVDEV), "evdevPassthrough");
        assert_null(cfg_section_name(DEV_UNKNOWN));
        cfg_free(c);

        /* An empty configuration is valid and has defaults. */
        c = load_ok("{}");
        assert_int_equal(c->n_vms, 0);
        assert_int_equal(c->n_entries[DEV_USB] + c->n_entries[DEV_PCI] + c->n_entries[DEV_EVDEV], 0);
        assert_int_equal(c->general.n_host_mounts, 3);
        cfg_free(c);
        cfg_free(NULL);
}

/* enable/disable on entries and rules: enable:false == disable:true. */
static void test_enable_disable(void **state) {
        static const struct {
                const char *keys;
                bool enabled;
        } cases[] = {
                {"", true},
                {", 'disable': true", false},
                {", 'disable': false", true},
                {", 'enable': false", false},
                {", 'enable': true", true},
                {", 'disable': true, 'enable': false", false},
                {", 'disable': false, 'enable': true", true},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char json[512];
                snprintf(json, sizeof(json),
                         SECTION("usbPassthrough", "{'targetVm': 'vm1'%s, 'allow': [{'bus': 1%s}]}"),
                         cases[i].keys, cases[i].keys);
                struct cfg *c = load_ok(json);
                assert_int_equal(c->entries[DEV_USB][0].enabled, cases[i].enabled);
                assert_int_equal(c->entries[DEV_USB][0].allow[0].enabled, cases[i].enabled);
                cfg_free(c);
        }
}

static void test_legacy_evdev(void **state) {
        struct cfg *c = load_ok("{" VMS ", 'evdevPassthrough': {'disable': false, 'targetVm': 'vm2'}}");
        assert_int_equal(c->n_entries[DEV_EVDEV], 1);
        const struct cfg_entry *e = &c->entries[DEV_EVDEV][0];
        assert_true(e->legacy_all_inputs);
        assert_true(e->enabled);
        assert_int_equal(e->n_vms, 1);
        assert_string_equal(e->vms[0]->name, "vm2");
        assert_int_equal(e->n_allow + e->n_deny, 0);
        cfg_free(c);

        /* Disabled with no target: nothing to route. */
        c = load_ok("{" VMS ", 'evdevPassthrough': {'disable': true}}");
        assert_int_equal(c->n_entries[DEV_EVDEV], 0);
        assert_int_equal(c->n_warnings, 0);
        cfg_free(c);

        c = load_ok(
                "{" VMS
                ", 'evdevPassthrough': {'enable': true, 'targetVm': 'vm1', 'description': 'all inputs'}}");
        assert_true(c->entries[DEV_EVDEV][0].enabled);
        assert_string_equal(c->entries[DEV_EVDEV][0].description, "all inputs");
        cfg_free(c);
}

/* ---- keys of the older daemon's deployments: parsed, typed and kept for later programs */

static void test_compat_keys(void **state) {
        struct cfg *c = load_ok(
                "{'vms': [{'name': 'gui-vm', 'type': 'qemu', 'socket': '/run/gui.sock'},"
                "         {'name': 'ch', 'type': 'cloud-hypervisor', 'socket': '/run/ch.sock'}],"
                " 'usbPassthrough': [{'targetVm': 'gui-vm', 'allow': ["
                "     {'driverPath': '.*/kernel/drivers/net/usb/.*', 'description': 'USB NICs'},"
                "     {'description': 'fpr0', 'bus': null, 'port': null, 'vendorId': '06cb', 'productId': "
                "'00fc'}]}],"
                " 'pciPassthrough': [{'targetVm': 'gui-vm', 'skipOnSuspend': true, 'autoOvmf': true, "
                "'crosvmUseRootBus': true,"
                "     'qemuUseRootBus': true, 'tag': 'gpu', 'allow': [{'deviceClass': 3}]}],"
                " 'acpiPassthrough': [{'description': 'NHLT', 'targetVm': 'gui-vm', 'allow': ["
                "     {'acpiTable': '/sys/firmware/acpi/tables/NHLT', 'setUser': 'microvm'},"
                "     {'acpiTable': '/t2', 'setGroup': 'kvm', 'disable': true}]},"
                "   {'targetVm': 'ch', 'acpiTable': '/t3', 'setUser': 'u', 'setGroup': 'g', 'description': "
                "'inline'},"
                "   {'description': 'nowhere', 'disable': true}],"
                " 'usbAuthorization': {'enable': true, 'deauthorizeUnmatched': true,"
                "     'hostAllow': [{'interfaceClass': 3, 'interfaceProtocol': 1}, {'vendorId': '067b', "
                "'productId': '23a3'}]},"
                " 'general': {'modulesDir': '/srv/modules/6.1.0', 'ovmfCode': '/fw/CODE.fd', 'ovmfVars': "
                "'/fw/VARS.fd',"
                "     'statePath': '/var/lib/old/vhotplug.state', 'persistency': false,"
                "     'modprobe': '/bin/modprobe', 'modinfo': '/bin/modinfo', 'crosvm': '/opt/crosvm',"
                "     'api': {'enable': true, 'transports': ['vsock', 'unix', 'tcp'], 'port': 2001, "
                "'allowedCids': [5, 7],"
                "             'unixSocket': '/run/vhp/api.sock', 'unixSocketUser': 'microvm', "
                "'unixSocketGroup': 'kvm',"
                "             'unixSocketMode': '0660', 'host': '0.0.0.0'}}}");

        /* cloud-hypervisor: kept, but not for hot-plug */
        assert_int_equal(c->vms[1].type, VMM_CLOUD_HYPERVISOR);
        assert_false(cfg_vm_can_hotplug(&c->vms[1]));
        assert_true(cfg_vm_can_hotplug(&c->vms[0]));
        assert_string_equal(cfg_vm_type_name(VMM_CLOUD_HYPERVISOR), "cloud-hypervisor");
        assert_string_equal(cfg_vm_type_name(VMM_CROSVM), "crosvm");

        const struct cfg_rule *r = &c->entries[DEV_USB][0].allow[0];
        assert_int_equal(r->fields, RF_DRIVER_PATH);
        assert_int_equal(regexec(&r->driver_path,
                                 "/lib/modules/6.1.0-56-amd64/kernel/drivers/net/usb/r8152.ko", 0, NULL, 0),
                         0);
        assert_int_equal(regexec(&r->driver_path, "/LIB/modules/x/KERNEL/drivers/NET/usb/ax88179_178a.ko.xz",
                                 0, NULL, 0),
                         0);
        assert_int_not_equal(
                regexec(&r->driver_path, "/lib/modules/x/kernel/drivers/bluetooth/btusb.ko", 0, NULL, 0), 0);
        /* null is absent */
        assert_int_equal(c->entries[DEV_USB][0].allow[1].fields, RF_VENDOR_ID | RF_PRODUCT_ID);

        const struct cfg_entry *e = &c->entries[DEV_PCI][0];
        assert_true(e->skip_on_suspend && e->auto_ovmf && e->crosvm_use_root_bus && e->use_root_bus);
        assert_string_equal(e->tag, "gpu");

        assert_int_equal(c->n_acpi, 3);
        assert_string_equal(c->acpi[0].description, "NHLT");
        assert_ptr_equal(c->acpi[0].vm, &c->vms[0]);
        assert_true(c->acpi[0].enabled);
        assert_int_equal(c->acpi[0].n_tables, 2);
        assert_string_equal(c->acpi[0].tables[0].path, "/sys/firmware/acpi/tables/NHLT");
        assert_string_equal(c->acpi[0].tables[0].set_user, "microvm");
        assert_null(c->acpi[0].tables[0].set_group);
        assert_true(c->acpi[0].tables[0].enabled);
        assert_false(c->acpi[0].tables[1].enabled);
        assert_string_equal(c->acpi[0].tables[1].set_group, "kvm");
        assert_ptr_equal(c->acpi[1].vm, &c->vms[1]);
        assert_int_equal(c->acpi[1].n_tables, 1);
        assert_string_equal(c->acpi[1].tables[0].path, "/t3");
        assert_string_equal(c->acpi[1].tables[0].set_user, "u");
        assert_string_equal(c->acpi[1].tables[0].set_group, "g");
        assert_string_equal(c->acpi[1].tables[0].description, "inline");
        assert_null(c->acpi[2].vm);
        assert_false(c->acpi[2].enabled);
        assert_int_equal(c->acpi[2].n_tables, 0);

        assert_true(c->usb_auth.enabled);
        assert_true(c->usb_auth.deauthorize_unmatched);
        assert_int_equal(c->usb_auth.n_host_allow, 2);
        assert_int_equal(c->usb_auth.host_allow[0].fields, RF_IF_CLASS | RF_IF_PROTOCOL);
        assert_int_equal(c->usb_auth.host_allow[1].product_id, 0x23a3);

        const struct cfg_general *g = &c->general;
        assert_string_equal(g->modules_dir, "/srv/modules/6.1.0");
        assert_string_equal(g->ovmf_code, "/fw/CODE.fd");
        assert_string_equal(g->ovmf_vars, "/fw/VARS.fd");
        assert_string_equal(g->state_path, "/var/lib/old/vhotplug.state");
        assert_false(g->persistency);
        assert_string_equal(g->crosvm, "/opt/crosvm");
        assert_true(g->api.enabled);
        assert_int_equal(g->api.transports, CFG_API_UNIX | CFG_API_VSOCK | CFG_API_TCP);
        assert_int_equal(g->api.port, 2001);
        assert_int_equal(g->api.n_allowed_cids, 2);
        assert_int_equal(g->api.allowed_cids[0], 5);
        assert_int_equal(g->api.allowed_cids[1], 7);
        assert_string_equal(g->api.unix_socket, "/run/vhp/api.sock");
        assert_string_equal(g->api.unix_user, "microvm");
        assert_string_equal(g->api.unix_group, "kvm");
        assert_int_equal(g->api.unix_mode, 0660);
        assert_string_equal(g->api.host, "0.0.0.0");
        /* nothing here is an unknown key */
        for (size_t i = 0; i < c->n_warnings; i++)
                if (strstr(c->warnings[i], "unknown key"))
                        fail_msg("unexpected: %s", c->warnings[i]);
        cfg_free(c);

        /* Defaults: what the older daemon assumed. */
        c = load_ok("{'usbAuthorization': {'hostAllow': [{'interfaceClass': 3}]}, 'general': {'api': {}}}");
        assert_false(c->usb_auth.enabled); /* off unless enabled */
        assert_false(c->usb_auth.deauthorize_unmatched);
        assert_true(c->general.api.enabled);            /* an api object is on unless disabled... */
        assert_int_equal(c->general.api.transports, 0); /* ...and then listens nowhere */
        assert_int_equal(c->general.api.port, CFG_DEFAULT_API_PORT);
        assert_string_equal(c->general.api.unix_socket, CFG_DEFAULT_API_SOCKET);
        assert_string_equal(c->general.api.host, CFG_DEFAULT_API_HOST);
        assert_int_equal(c->general.api.unix_mode, -1);
        assert_null(c->general.api.allowed_cids);
        assert_null(c->general.modules_dir);
        assert_null(c->general.ovmf_code);
        assert_string_equal(c->general.state_path, CFG_DEFAULT_STATE_PATH);
        assert_true(c->general.persistency);
        cfg_free(c);
        c = load_ok("{'usbAuthorization': {'disable': false}, 'general': {'api': {'disable': true, "
                    "'allowedCids': null}}}");
        assert_true(c->usb_auth.enabled); /* the older daemon's _enabled(): disable:false enables */
        assert_false(c->general.api.enabled);
        cfg_free(c);
        c = load_ok("{}");
        assert_false(c->general.api.enabled);
        cfg_free(c);
        c = load_ok(
                GENERAL("'api': {'unixSocketMode': '0o600', 'transports': ['vsock'], 'port': 4294967294}"));
        assert_int_equal(c->general.api.unix_mode, 0600);
        assert_int_equal(c->general.api.port, 4294967294u);
        cfg_free(c);
}

/* ---- "\u0000" would silently cut a string ("vm1\u0000evil" read as "vm1"): refused */

static void test_nul_escape(void **state) {
        static const struct {
                const char *json, *expected;
        } cases[] = {
                {"{\"vms\": [{\"name\": \"vm1\\u0000evil\", \"type\": \"qemu\", \"socket\": \"/s\"}]}",
                 "cfg.json:1:23: \\u0000 (a NUL character) inside a string near \"\\\\u0000evil\\\", "
                 "\\\"ty\""},
                {"{\"general\": {\"database\": \"/var/lib/x.db\\u0000/tmp/evil\"}}",
                 "cfg.json:1:40: \\u0000"},
                {"{\"a\\u0000b\": 1}", "cfg.json:1:4: \\u0000"},
                {"{\"x\": \"\\\\\\u0000\"}",
                 "cfg.json:1:10: \\u0000"}, /* an escaped backslash, then the escape */
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct cfg_error err = {.msg = ""};
                struct cfg *c = NULL;
                assert_int_equal(cfg_load_string(cases[i].json, strlen(cases[i].json), "cfg.json", &c, &err),
                                 -EINVAL);
                assert_null(c);
                if (strncmp(err.msg, cases[i].expected, strlen(cases[i].expected)) != 0)
                        fail_msg("case %zu: expected \"%s...\", got \"%s\"", i, cases[i].expected, err.msg);
        }
        /* The six characters \u0000 written with an escaped backslash are ordinary text. */
        static const char ok[] =
                "{\"usbPassthrough\": [], \"general\": {\"lockDir\": \"/run/a\\\\u0000b\"}}";
        struct cfg *c = NULL;
        struct cfg_error err;
        assert_int_equal(cfg_load_string(ok, strlen(ok), "cfg.json", &c, &err), 0);
        assert_string_equal(c->general.lock_dir, "/run/a\\u0000b");
        cfg_free(c);
        /* Other escapes below 0x20 stay allowed (they are data, escaped in messages). */
        static const char ctl[] = "{\"usbPassthrough\": [], \"general\": {\"lockDir\": \"/run/a\\u0001b\"}}";
        assert_int_equal(cfg_load_string(ctl, strlen(ctl), "cfg.json", &c, &err), 0);
        assert_string_equal(c->general.lock_dir, "/run/a\x01"
                                                 "b");
        cfg_free(c);
}

/* ---- what a pattern may cost to compile (issue 12: ".{0,9999}" took 1.6 GB and 1.2 s) */

/* Bytes the allocator holds now. */
static size_t heap_in_use(void) {
#if defined(__SANITIZE_ADDRESS__)
        return __sanitizer_get_current_allocated_bytes();
#else
        return mallinfo2().uordblks;
#endif
}

static void test_regex_cost(void **state) {
        /* Accepted patterns at the limits: each compiles into little memory. */
        static const char *const accepted[] = {
                ".{0,255}",
                "a{255}",
                "[[:alpha:]]{0,255}",
                "(.{1,16}){0,15}",
                "(a|b|c|d|e|f){0,42}",
                "x{3,}",
                ".*/kernel/drivers/net/usb/.*",
                "(ab|cd)+(ef)*",
                "((a+)?b)*",
                ".{0,100}.{0,100}.{0,100}",
                "[0-9]{4}-[0-9]{2}",
                "a{,5}",
                "\\{0,9999}",
                "^Lid Switch$",
                "\\bMouse\\b",
                "(a|b)?c",
                "(a?)?",
                "(^|a)(^|a)(^|a)(^|a)",
                "((a|b)(c|d)){0,60}",
        };
        for (size_t i = 0; i < ELEMENTSOF(accepted); i++) {
                char why[128] = "";
                regex_t re;
                unsigned cost;
                size_t before = heap_in_use();
                int r = cfg_regex_compile(accepted[i], &re, &cost, why, sizeof(why));
                if (r < 0)
                        fail_msg("'%s' refused: %s", accepted[i], why);
                size_t used = heap_in_use() - before;
                print_message("%-32s cost %7u  %7zu KiB\n", accepted[i], cost, used >> 10);
                assert_true(cost <= CFG_REGEX_MAX_COST);
                /* ~20 bytes per unit of cost, plus the fixed part of a compiled pattern */
                if (used > 64 * 1024 + (size_t)cost * 40)
                        fail_msg("'%s': %zu bytes for an estimated cost of %u", accepted[i], used, cost);
                regfree(&re);
        }
        /* Refused before regcomp sees them (each would take from 8 MB to gigabytes). */
        static const char *const refused[] = {
                ".{0,9999}",
                ".{0,256}",
                "a{300,}",
                "(.{0,255}){5}",
                "(.{0,50}){0,20}",
                "(a|b|c|d){0,255}",
                ".{0,255}.{0,255}.{0,255}.{0,255}.{0,255}",
                "((a{0,255}){0,255}){0,255}",
                "a{0,99999999999999999999}",
                /* what the model cannot price (found by fuzz/fuzz-regex.c) */
                "(a||){90}",
                "(a|b||){090}",
                "(|a)",
                "(a|)",
                "a|",
                "|a",
                "(a*)+",
                "(a?){0,90}",
                "()+",
                "(^)+",
                "(\\b){9}",
                "\\b\\b\\b\\b\\b\\b\\b\\b\\b",
                "(^|$)(^|$)(^|$)(^|$)(^|$)",
                "((a?)(b?))*",
        };
        for (size_t i = 0; i < ELEMENTSOF(refused); i++) {
                char why[128] = "";
                regex_t re;
                size_t before = heap_in_use();
                if (cfg_regex_compile(refused[i], &re, NULL, why, sizeof(why)) != -EINVAL)
                        fail_msg("'%s' was accepted", refused[i]);
                assert_true(heap_in_use() - before < 4096);
                if (!strstr(why, "above 255") && !strstr(why, "too costly") && !strstr(why, "empty") &&
                    !strstr(why, "anchors"))
                        fail_msg("'%s': %s", refused[i], why);
        }
        /* Braces that are no interval: regcomp's own error. */
        static const char *const bad[] = {"{", "a{1,2", "a{2,1}"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char why[128] = "";
                regex_t re;
                assert_int_equal(cfg_regex_compile(bad[i], &re, NULL, why, sizeof(why)), -EINVAL);
                assert_true(why[0] != '\0');
        }

        /* The whole configuration is bounded too: 63 of the costliest allowed patterns load, 64 do not. */
        for (size_t n = 63; n <= 64; n++) {
                size_t cap = 256 + n * 64, len;
                _cleanup_free_ char *json = malloc(cap);
                assert_non_null(json);
                len = (size_t)snprintf(
                        json, cap,
                        "{\"vms\": [{\"name\": \"v\", \"type\": \"qemu\", \"socket\": \"/s\"}],"
                        " \"usbPassthrough\": [{\"targetVm\": \"v\", \"allow\": [");
                for (size_t i = 0; i < n; i++)
                        len += (size_t)snprintf(json + len, cap - len, "%s{\"productName\": \".{0,255}\"}",
                                                i ? "," : "");
                snprintf(json + len, cap - len, "]}]}");
                struct cfg_error err = {.msg = ""};
                struct cfg *c = NULL;
                int r = cfg_load_string(json, strlen(json), "cfg.json", &c, &err);
                if (n == 63) {
                        if (r < 0)
                                fail_msg("%s", err.msg);
                        cfg_free(c);
                } else {
                        assert_int_equal(r, -EINVAL);
                        assert_contains(err.msg,
                                        "cfg.json: usbPassthrough[0].allow[63].productName: the regular "
                                        "expressions of this configuration are too costly to compile");
                }
        }
}

/* ---- --check-config: what depends on this host is a warning, never a refusal */

static void test_check_host(void **state) {
        static const char json[] =
                "{'vms': [{'name': 'a', 'type': 'crosvm', 'socket': '/s'}],"
                " 'usbPassthrough': [{'targetVm': 'a', 'allow': [{'driverPath': '.*/net/.*'}]}],"
                " 'acpiPassthrough': [{'targetVm': 'a', 'allow': [{'acpiTable': '/nonexistent/NHLT', "
                "'setUser': 'no-such-user-vhp',"
                "     'setGroup': 'no-such-group-vhp'}]}],"
                " 'usbAuthorization': {'enable': true, 'hostAllow': [{'vendorId': '046d', 'productId': "
                "'c31c'},"
                "     {'interfaceClass': 3, 'interfaceProtocol': 2}]},"
                " 'general': {'crosvm': '/nonexistent/crosvm', 'ovmfCode': '/nonexistent/CODE.fd', "
                "'ovmfVars': '/dev/null',"
                "     'modulesDir': '/nonexistent/modules',"
                "     'api': {'transports': ['unix'], 'unixSocketUser': 'no-such-user-vhp', "
                "'unixSocketGroup': 'root'}}}";
        static const char *const expected[] = {
                "cfg.json: general.api: unixSocketUser: no user 'no-such-user-vhp' on this host",
                "cfg.json: general.ovmfCode: /nonexistent/CODE.fd does not exist",
                "cfg.json: general.ovmfVars: /dev/null is not a regular file",
                "cfg.json: general.crosvm: /nonexistent/crosvm is not an executable file here",
                "cfg.json: general.modulesDir: driverPath rules cannot match: no kernel module index "
                "(modules.alias.bin) "
                "in /nonexistent/modules: No such file or directory",
                "cfg.json: acpiPassthrough[0]: acpiTable /nonexistent/NHLT does not exist",
                "cfg.json: acpiPassthrough[0]: setUser: no user 'no-such-user-vhp' on this host",
                "cfg.json: acpiPassthrough[0]: setGroup: no group 'no-such-group-vhp' on this host",
                "cfg.json: usbAuthorization: no hostAllow rule keeps a USB keyboard on the host: a keyboard "
                "that no VM "
                "claims stays unauthorized (add {\"interfaceClass\": 3, \"interfaceProtocol\": 1} to "
                "hostAllow)",
        };
        _cleanup_free_ char *text = q(json);
        struct cfg_error err = {.msg = ""};
        struct cfg *c = NULL;

        /* Loaded for an event: nothing looked up. */
        assert_int_equal(cfg_load_string(text, strlen(text), "cfg.json", &c, &err), 0);
        for (size_t i = 0; i < c->n_warnings; i++)
                if (!strstr(c->warnings[i], "tcp"))
                        fail_msg("unexpected warning without CFG_CHECK_HOST: %s", c->warnings[i]);
        cfg_free(c);

        int r = cfg_load_string_flags(text, strlen(text), "cfg.json", CFG_CHECK_HOST, &c, &err);
        if (r < 0)
                fail_msg("%s", err.msg);
        for (size_t i = 0; i < c->n_warnings && i < ELEMENTSOF(expected); i++)
                if (strcmp(c->warnings[i], expected[i]) != 0)
                        fail_msg("warning %zu: expected \"%s\", got \"%s\"", i, expected[i], c->warnings[i]);
        assert_int_equal(c->n_warnings, ELEMENTSOF(expected));
        cfg_free(c);

        /* Rules that keep some USB keyboard on the host, and some that do not. */
        static const struct {
                const char *rule;
                bool keeps;
        } kb[] = {
                {"{'interfaceClass': 3}", true},
                {"{'interfaceClass': 3, 'interfaceSubclass': 1, 'interfaceProtocol': 1}", true},
                {"{'vendorName': '.*'}", true},
                {"{'productName': 'x*'}", true},
                {"{'deviceClass': 0, 'interfaceClass': 3}", true},
                {"{'removable': ['removable'], 'interfaceClass': 3}", true},
                {"{'interfaceClass': 3, 'disable': true}", false},
                {"{'interfaceClass': 3, 'interfaceProtocol': 2}", false},
                {"{'vendorName': 'Logitech'}", false},
                {"{'removable': ['fixed'], 'interfaceClass': 3}", false},
                {"{'vendorId': '046d', 'productId': 'c31c'}", false},
                {"{'bus': 1, 'port': 2}", false},
                {"{'driverPath': '.*'}", false},
                {"{'deviceClass': 3}", false},
        };
        for (size_t i = 0; i < ELEMENTSOF(kb); i++) {
                char conf[512];
                snprintf(conf, sizeof(conf), "{'usbAuthorization': {'enable': true, 'hostAllow': [%s]}}",
                         kb[i].rule);
                _cleanup_free_ char *t = q(conf);
                assert_int_equal(cfg_load_string_flags(t, strlen(t), "cfg.json", CFG_CHECK_HOST, &c, &err),
                                 0);
                bool warned = false;
                for (size_t k = 0; k < c->n_warnings; k++)
                        warned |= strstr(c->warnings[k], "no hostAllow rule keeps a USB keyboard") != NULL;
                if (warned == kb[i].keeps)
                        fail_msg("%s: expected %s", kb[i].rule,
                                 kb[i].keeps ? "no warning" : "the keyboard warning");
                cfg_free(c);
        }
        /* Authorization off: no such warning. */
        _cleanup_free_ char *off = q("{'usbAuthorization': {'enable': false}}");
        assert_int_equal(cfg_load_string_flags(off, strlen(off), "cfg.json", CFG_CHECK_HOST, &c, &err), 0);
        assert_int_equal(c->n_warnings, 0);
        cfg_free(c);
}

/* ---- hostile strings: bounded, stored as data, escaped in messages */

static void test_hostile_strings(void **state) {
        struct cfg_error err;
        struct cfg *c = NULL;

        /* A 4096-byte description full of quotes, backslashes, newlines and UTF-8 loads intact. */
        static const char piece[] = "\\\"q\\\" \\\\ \\n\\t\\u00e9\\ud83d\\ude00;'"; /* JSON escapes */
        static const char decoded[] = "\"q\" \\ \n\t\xc3\xa9\xf0\x9f\x98\x80;'";
        size_t reps = CFG_MAX_STRING / (sizeof(decoded) - 1);
        size_t cap = 64 + reps * sizeof(piece) + 256;
        _cleanup_free_ char *json = malloc(cap), *want = malloc(CFG_MAX_STRING + 1);
        assert_non_null(json);
        assert_non_null(want);
        size_t len = (size_t)snprintf(
                json, cap,
                "{\"vms\": [{\"name\": \"v\", \"type\": \"qemu\", \"socket\": \"/s\"}], "
                "\"usbPassthrough\": [{\"targetVm\": \"v\", \"allow\": [{\"bus\": 1, \"description\": \"");
        want[0] = '\0';
        for (size_t i = 0; i < reps; i++) {
                len += (size_t)snprintf(json + len, cap - len, "%s", piece);
                strcat(want, decoded);
        }
        snprintf(json + len, cap - len, "\"}]}]}");
        assert_int_equal(cfg_load_string(json, strlen(json), "cfg.json", &c, &err), 0);
        assert_string_equal(c->entries[DEV_USB][0].allow[0].description, want);
        cfg_free(c);

        /* One byte more than CFG_MAX_STRING is refused with the path. */
        _cleanup_free_ char *big = malloc(CFG_MAX_STRING + 256);
        assert_non_null(big);
        len = (size_t)sprintf(big, "{\"vms\": [{\"name\": \"v\", \"type\": \"qemu\", \"socket\": \"");
        memset(big + len, 'x', CFG_MAX_STRING + 1);
        strcpy(big + len + CFG_MAX_STRING + 1, "\"}]}");
        c = NULL;
        assert_int_equal(cfg_load_string(big, strlen(big), "cfg.json", &c, &err), -EINVAL);
        assert_null(c);
        assert_contains(err.msg, "cfg.json: vms[0].socket: expected a string of at most 4096 bytes");

        /* Control bytes and quotes in keys and values are escaped and cut in messages. */
        _cleanup_free_ char *key = malloc(3000);
        assert_non_null(key);
        strcpy(key, "{\"bad\\\"key\\nwith\\u0001");
        memset(key + strlen(key), 'k', 2000);
        strcpy(key + 22 + 2000, "\": 1}");
        c = NULL;
        assert_int_equal(cfg_load_string(key, strlen(key), "cfg.json", &c, &err), 0);
        assert_int_equal(c->n_warnings, 1);
        assert_contains(c->warnings[0], "cfg.json: bad\\\"key\\nwith\\x01kk");
        assert_contains(c->warnings[0], "kk...: unknown key 'bad\\\"key\\nwith\\x01kk");
        assert_null(strchr(c->warnings[0], '\n'));
        assert_true(strlen(c->warnings[0]) < 400);
        cfg_free(c);

        c = NULL;
        assert_int_equal(load(USB("{'vendorId': '\\n\\u0007\\'x'}"), &c, &err), -EINVAL);
        assert_contains(err.msg, "got \"\\n\\x07\\\"x\"");

        /* A NULL error pointer is accepted. */
        assert_int_equal(cfg_load_string("[", 1, NULL, &c, NULL), -EINVAL);
}

/* ---- scale: 50 000 rules load; more than CFG_MAX_RULES are refused */

static char *many_rules(size_t n_entries, size_t per_entry) {
        size_t cap = 256 + n_entries * (64 + per_entry * 96), len;
        char *s = malloc(cap);
        assert_non_null(s);
        len = (size_t)snprintf(s, cap,
                               "{\"vms\": [{\"name\": \"vm1\", \"type\": \"qemu\", \"socket\": \"/s\"}],\n"
                               " \"usbPassthrough\": [\n");
        for (size_t e = 0; e < n_entries; e++) {
                len += (size_t)snprintf(s + len, cap - len, "%s  {\"targetVm\": \"vm1\", \"allow\": [\n",
                                        e ? ",\n" : "");
                for (size_t r = 0; r < per_entry; r++) {
                        size_t k = e * per_entry + r;
                        if (k % 10 == 0)
                                len += (size_t)snprintf(s + len, cap - len,
                                                        "%s   {\"productName\": \"Device %zu.*\"}",
                                                        r ? ",\n" : "", k);
                        else
                                len += (size_t)snprintf(
                                        s + len, cap - len,
                                        "%s   {\"vendorId\": \"%04zx\", \"productId\": \"%04zx\"}",
                                        r ? ",\n" : "", k >> 16, k & 0xffff);
                }
                len += (size_t)snprintf(s + len, cap - len, "]}");
        }
        snprintf(s + len, cap - len, "]}\n");
        return s;
}

static void test_50k_rules(void **state) {
        _cleanup_free_ char *json = many_rules(50, 1000);
        struct cfg_error err = {.msg = ""};
        struct cfg *c = NULL;
        struct timespec t0, t1;

        clock_gettime(CLOCK_MONOTONIC, &t0);
        int r = cfg_load_string(json, strlen(json), "big.json", &c, &err);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (r < 0)
                fail_msg("%s", err.msg);
        print_message("50000 rules (%zu KiB) loaded in %.1f ms\n", strlen(json) >> 10,
                      (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
        assert_int_equal(c->n_entries[DEV_USB], 50);
        const struct cfg_rule *last = &c->entries[DEV_USB][49].allow[999];
        assert_int_equal(last->vendor_id, 49999 >> 16);
        assert_int_equal(last->product_id, 49999 & 0xffff);
        assert_int_equal(
                regexec(&c->entries[DEV_USB][49].allow[990].product_name, "device 49990 x", 0, NULL, 0), 0);
        cfg_free(c);

        _cleanup_free_ char *too_many = many_rules(101, 1000);
        c = NULL;
        assert_int_equal(cfg_load_string(too_many, strlen(too_many), "big.json", &c, &err), -EINVAL);
        assert_null(c);
        assert_contains(err.msg, "big.json: usbPassthrough[100].allow: too many rules");
}

/* ---- damaged configurations: never a crash, always an error that names the file */

static void test_mutations(void **state) {
        _cleanup_free_ char *text = NULL;
        FILE *f = fopen("examples/vhotplug.conf", "r");
        size_t len;

        assert_non_null(f);
        text = malloc(1 << 16);
        assert_non_null(text);
        len = fread(text, 1, 1 << 16, f);
        fclose(f);
        assert_true(len > 100);

        _cleanup_free_ char *buf = malloc(len);
        assert_non_null(buf);
        srand(1234);
        for (int i = 0; i < 3000; i++) {
                size_t n = len;
                memcpy(buf, text, len);
                for (int k = rand() % 4; k >= 0; k--)
                        buf[rand() % n] = "{}[],:\"0a-1 .\\z"[rand() % 16];
                if (rand() % 4 == 0)
                        n = (size_t)rand() % len;

                struct cfg_error err = {.msg = ""};
                struct cfg *c = NULL;
                int r = cfg_load_string(buf, n, "m.json", &c, &err);
                if (r == 0) {
                        assert_non_null(c);
                        cfg_free(c);
                        continue;
                }
                assert_int_equal(r, -EINVAL);
                assert_null(c);
                if (strncmp(err.msg, "m.json:", 7) != 0)
                        fail_msg("iteration %d: message without the file name: %s", i, err.msg);
        }
}

/* ---- the file: ownership, mode, type, size, existence */

struct tmp {
        char dir[64];
        char file[96];
};

static int tmp_setup(void **state) {
        struct tmp *t = calloc(1, sizeof(*t));
        assert_non_null(t);
        strcpy(t->dir, "/tmp/test-config-XXXXXX");
        assert_non_null(mkdtemp(t->dir));
        snprintf(t->file, sizeof(t->file), "%s/vhotplug.conf", t->dir);
        *state = t;
        return 0;
}

static int tmp_teardown(void **state) {
        struct tmp *t = *state;
        char path[128];
        static const char *const names[] = {"vhotplug.conf", "fifo", "sub"};

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                snprintf(path, sizeof(path), "%s/%s", t->dir, names[i]);
                (void)(unlink(path) == 0 || rmdir(path) == 0);
        }
        assert_int_equal(rmdir(t->dir), 0);
        free(t);
        return 0;
}

static void write_file(const char *path, const char *text, mode_t mode) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(chmod(path, mode), 0);
}

static void test_file_permissions(void **state) {
        struct tmp *t = *state;
        struct cfg_error err;
        struct cfg *c = NULL;

        write_file(t->file, "{\"vms\": []}", 0666);
        assert_int_equal(cfg_load(t->file, 0, &c, &err), -EPERM);
        assert_null(c);
        if (geteuid() == 0) {
                assert_contains(err.msg, t->file);
                assert_contains(err.msg, "writable by group or others (mode 0666");
        }
        assert_int_equal(cfg_load(t->file, CFG_NO_STRICT_PERMS, &c, &err), 0);
        assert_string_equal(c->path, t->file);
        cfg_free(c);
        c = NULL;

        assert_int_equal(chmod(t->file, 0620), 0);
        assert_int_equal(cfg_load(t->file, 0, &c, &err), -EPERM);

        /* Optional: the root-owned cases need root (chown); CI runs as root. As another user the
         * test counts as skipped, not passed. */
        if (geteuid() != 0)
                skip();
        assert_int_equal(chmod(t->file, 0644), 0);
        assert_int_equal(cfg_load(t->file, 0, &c, &err), 0);
        cfg_free(c);
        c = NULL;

        assert_int_equal(chown(t->file, 65534, 65534), 0);
        assert_int_equal(cfg_load(t->file, 0, &c, &err), -EPERM);
        assert_contains(err.msg, "owned by uid 65534, not by root");
        assert_int_equal(cfg_load(t->file, CFG_NO_STRICT_PERMS, &c, &err), 0);
        cfg_free(c);
}

static void test_file_checks(void **state) {
        struct tmp *t = *state;
        struct cfg_error err;
        struct cfg *c = NULL;
        char path[128];

        /* Missing. */
        snprintf(path, sizeof(path), "%s/missing.conf", t->dir);
        assert_int_equal(cfg_load(path, CFG_NO_STRICT_PERMS, &c, &err), -ENOENT);
        assert_contains(err.msg, path);
        assert_contains(err.msg, "no such file");

        /* 20 MB (sparse): refused before reading, whatever the mode. */
        write_file(t->file, "", 0644);
        assert_int_equal(truncate(t->file, 20 << 20), 0);
        assert_int_equal(cfg_load(t->file, CFG_NO_STRICT_PERMS, &c, &err), -EFBIG);
        assert_null(c);
        assert_contains(err.msg, t->file);
        assert_contains(err.msg, "file too large");

        /* Exactly at the limit is read (and here fails as JSON, since it is all NUL bytes). */
        assert_int_equal(truncate(t->file, CFG_MAX_FILE_SIZE), 0);
        assert_int_equal(cfg_load(t->file, CFG_NO_STRICT_PERMS, &c, &err), -EINVAL);
        assert_contains(err.msg, "NUL byte");

        /* Not regular files: a directory, and a FIFO (which must not block). */
        snprintf(path, sizeof(path), "%s/sub", t->dir);
        assert_int_equal(mkdir(path, 0755), 0);
        assert_int_equal(cfg_load(path, CFG_NO_STRICT_PERMS, &c, &err), -EINVAL);
        assert_contains(err.msg, "not a regular file");
        snprintf(path, sizeof(path), "%s/fifo", t->dir);
        assert_int_equal(mkfifo(path, 0600), 0);
        assert_int_equal(cfg_load(path, CFG_NO_STRICT_PERMS, &c, &err), -EINVAL);
        assert_contains(err.msg, "not a regular file");

        /* Syntax errors in a file name the file, line and column. */
        write_file(t->file, "{\n  \"vms\": [\n    {\"name\": \"a\",, }\n  ]\n}\n", 0644);
        assert_int_equal(cfg_load(t->file, CFG_NO_STRICT_PERMS, &c, &err), -EINVAL);
        char expected[160];
        snprintf(expected, sizeof(expected), "%s:3:19: JSON syntax error", t->file);
        assert_contains(err.msg, expected);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_error_cases),
                cmocka_unit_test(test_syntax_errors),
                cmocka_unit_test(test_warnings),
                cmocka_unit_test(test_notes),
                cmocka_unit_test(test_seed_sample),
                cmocka_unit_test(test_example_config),
                cmocka_unit_test(test_fields),
                cmocka_unit_test(test_order_and_lookup),
                cmocka_unit_test(test_enable_disable),
                cmocka_unit_test(test_legacy_evdev),
                cmocka_unit_test(test_hostile_strings),
                cmocka_unit_test(test_compat_keys),
                cmocka_unit_test(test_nul_escape),
                cmocka_unit_test(test_regex_cost),
                cmocka_unit_test(test_check_host),
                cmocka_unit_test(test_50k_rules),
                cmocka_unit_test(test_mutations),
                cmocka_unit_test_setup_teardown(test_file_permissions, tmp_setup, tmp_teardown),
                cmocka_unit_test_setup_teardown(test_file_checks, tmp_setup, tmp_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
