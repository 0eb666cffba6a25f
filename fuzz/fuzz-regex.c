/* libFuzzer target: what a rule's regular expression may cost to compile (issue 12: ".{0,9999}" took
 * 1.6 GB and 1.2 s in every helper). Every pattern cfg_regex_compile() accepts must compile within
 * REGEX_FUZZ_MAX_BYTES of heap at its peak and REGEX_FUZZ_MAX_MS of time; a pattern it refuses must
 * cost nothing. The allocator's hooks see every malloc and free regcomp makes. */
#include <regex.h>
#include <sanitizer/allocator_interface.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "util.h"

/* ~12x the estimate's bound (CFG_REGEX_MAX_COST units of ~20 B) */
#define REGEX_FUZZ_MAX_BYTES (64u << 20)
/* sanitizers slow regcomp down several times */
#define REGEX_FUZZ_MAX_MS 2000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int counting;
static size_t live, peak;

static void on_malloc(const volatile void *p, size_t n) {
        if (!counting)
                return;
        live += n;
        if (live > peak)
                peak = live;
}

static void on_free(const volatile void *p) {
        if (counting && p) {
                size_t n = __sanitizer_get_allocated_size((const void *)p);
                live = n > live ? 0 : live - n;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static int hooked;
        char pattern[CFG_MAX_STRING + 1], why[128];
        unsigned cost = 0;
        regex_t re;

        if (!hooked)
                hooked = __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free) || 1;
        if (size > CFG_MAX_STRING)
                return 0;
        memcpy(pattern, data, size);
        pattern[size] = '\0';

        live = peak = 0;
        counting = 1;
        int64_t t0 = now_ms();
        int r = cfg_regex_compile(pattern, &re, &cost, why, sizeof(why));
        int64_t ms = now_ms() - t0;
        counting = 0;
        if (peak > REGEX_FUZZ_MAX_BYTES || ms > REGEX_FUZZ_MAX_MS) {
                fprintf(stderr,
                        "pattern %s: %s, estimated cost %u, compiled with a peak of %zu bytes in %lld ms\n",
                        pattern, r == 0 ? "accepted" : "refused", cost, peak, (long long)ms);
                abort();
        }
        if (r == 0)
                regfree(&re);
        return 0;
}
