/* Reconcile's verdict for one device in one VM (recon_decide), as data: what is desired (rules),
 * what is recorded (database), what the VM has (actual) → the action. Each row is its own test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "reconcile.h"

#define NONE -1 /* no open record */

struct plan_case {
        const char *name;
        struct recon_facts facts;
        enum recon_op op;
        const char *why;
};

static const struct plan_case cases[] = {
        /* desired here */
        {"desired, in the VM, recorded attached: agrees",
         {.present = true, .desired = true, .row_state = DB_ATTACHED, .row_here = true, .in_vm = true},
         RECON_NONE,
         NULL},
        {"desired, in the VM, no record: adopt",
         {.present = true, .desired = true, .row_state = NONE, .in_vm = true},
         RECON_ADOPT,
         "attached in the VM, no record"},
        {"desired, in the VM, record still attaching (helper killed): adopt",
         {.present = true, .desired = true, .row_state = DB_ATTACHING, .row_here = true, .in_vm = true},
         RECON_ADOPT,
         "attached in the VM, not recorded as attached"},
        {"desired, in the VM, recorded for another VM: adopt",
         {.present = true, .desired = true, .row_state = DB_ATTACHED, .row_here = false, .in_vm = true},
         RECON_ADOPT,
         "attached in the VM, not recorded as attached"},
        {"desired, not in the VM, recorded attached (VM restarted): reattach",
         {.present = true, .desired = true, .row_state = DB_ATTACHED, .row_here = true},
         RECON_REATTACH,
         "recorded as attached but the VM does not have it (VM restarted?)"},
        {"desired, not in the VM, no record: attach",
         {.present = true, .desired = true, .row_state = NONE},
         RECON_ATTACH,
         "present and claimed by the rules, not attached"},
        {"desired, not in the VM, pending (VM was down): attach",
         {.present = true, .desired = true, .row_state = DB_PENDING, .row_here = true},
         RECON_ATTACH,
         "pending attach, VM is running"},
        {"desired, not in the VM, attaching (helper killed): attach",
         {.present = true, .desired = true, .row_state = DB_ATTACHING, .row_here = true},
         RECON_ATTACH,
         "unfinished attach"},
        {"desired here, recorded attached in another VM: attach here",
         {.present = true, .desired = true, .row_state = DB_ATTACHED, .row_here = false},
         RECON_ATTACH,
         "recorded for another VM; the rules give it to this one"},
        /* recorded here, not desired here */
        {"gone from the host, still in the VM: detach",
         {.present = false, .row_state = DB_ATTACHED, .row_here = true, .in_vm = true},
         RECON_DETACH,
         "device gone from the host"},
        {"kept detached by the user, still in the VM: detach",
         {.present = true, .kept_detached = true, .row_state = DB_ATTACHED, .row_here = true, .in_vm = true},
         RECON_DETACH,
         "user asked to keep it detached"},
        {"rules moved it elsewhere, still in the VM: detach",
         {.present = true, .row_state = DB_ATTACHED, .row_here = true, .in_vm = true},
         RECON_DETACH,
         "no longer claimed by the rules for this VM"},
        {"detaching, the VM let it go: close",
         {.present = true, .row_state = DB_DETACHING, .row_here = true},
         RECON_CLOSE,
         "detach finished: the VM no longer has it"},
        {"recorded attached, gone from host and VM: close",
         {.present = false, .row_state = DB_ATTACHED, .row_here = true},
         RECON_CLOSE,
         "the VM does not have it"},
        {"pending for a VM the rules no longer choose: close",
         {.present = true, .row_state = DB_PENDING, .row_here = true},
         RECON_CLOSE,
         "the VM does not have it"},
        /* given on the VM's command line (cold-plug arguments) */
        {"cold-plugged, desired, in the VM, recorded attached: agrees",
         {.present = true,
          .desired = true,
          .cold_plugged = true,
          .row_state = DB_ATTACHED,
          .row_here = true,
          .in_vm = true},
         RECON_NONE,
         NULL},
        {"cold-plugged, claimed by no rule (an IOMMU group member), in the VM: kept",
         {.present = true, .cold_plugged = true, .row_state = DB_ATTACHED, .row_here = true, .in_vm = true},
         RECON_NONE,
         NULL},
        {"cold-plugged, gone from the host, still in the VM: detach",
         {.present = false, .cold_plugged = true, .row_state = DB_ATTACHED, .row_here = true, .in_vm = true},
         RECON_DETACH,
         "device gone from the host"},
        {"cold-plugged, kept detached by the user, still in the VM: detach",
         {.present = true,
          .kept_detached = true,
          .cold_plugged = true,
          .row_state = DB_ATTACHED,
          .row_here = true,
          .in_vm = true},
         RECON_DETACH,
         "user asked to keep it detached"},
        {"cold-plugged, the VM does not have it (started without it): close",
         {.present = true, .cold_plugged = true, .row_state = DB_ATTACHED, .row_here = true},
         RECON_CLOSE,
         "the VM does not have it"},
        /* suspended (usb|pci suspend): only resume puts it back */
        {"suspended, detached by the suspend: nothing",
         {.present = true, .suspended = true, .row_state = NONE},
         RECON_NONE,
         NULL},
        {"suspended, its detach still under way in the VM: detach",
         {.present = true, .suspended = true, .row_state = DB_DETACHING, .row_here = true, .in_vm = true},
         RECON_DETACH,
         "suspended: resume puts it back"},
        {"suspended cold-plugged device still in the VM: detach",
         {.present = true,
          .suspended = true,
          .cold_plugged = true,
          .row_state = DB_ATTACHED,
          .row_here = true,
          .in_vm = true},
         RECON_DETACH,
         "suspended: resume puts it back"},
        /* nothing here */
        {"not desired, no record here: nothing", {.present = true, .row_state = NONE}, RECON_NONE, NULL},
        {"not desired here, recorded elsewhere: nothing (that VM's plan handles it)",
         {.present = true, .row_state = DB_ATTACHED, .row_here = false},
         RECON_NONE,
         NULL},
};

static void test_case(void **state) {
        const struct plan_case *c = *state;
        const char *why = NULL;

        assert_int_equal(recon_decide(&c->facts, &why), c->op);
        if (c->why)
                assert_string_equal(why, c->why);
}

int main(void) {
        struct CMUnitTest tests[sizeof(cases) / sizeof(cases[0])];

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                tests[i] = (struct CMUnitTest){
                        .name = cases[i].name, .test_func = test_case, .initial_state = (void *)&cases[i]};
        return _cmocka_run_group_tests("reconcile plan", tests, sizeof(cases) / sizeof(cases[0]), NULL,
                                       NULL);
}
