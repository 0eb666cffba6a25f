#include "json.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "util.h"

/* Replaces *s (a cJSON-owned string) by its fixed copy when it needs fixing. cJSON frees with
 * its hooks, which are malloc/free unless changed (they are not, here). */
static int fix(char **s) {
        char *fixed;

        if (utf8_valid(*s))
                return 0;
        fixed = utf8_fix(*s);
        if (!fixed)
                return -ENOMEM;
        cJSON_free(*s);
        *s = fixed;
        return 0;
}

int json_fix_utf8(cJSON *item) {
        for (; item; item = item->next) {
                int r = 0;
                if (item->string && !(item->type & cJSON_StringIsConst))
                        r = fix(&item->string);
                if (r >= 0 && cJSON_IsString(item) && item->valuestring)
                        r = fix(&item->valuestring);
                if (r >= 0 && item->child)
                        r = json_fix_utf8(item->child);
                if (r < 0)
                        return r;
        }
        return 0;
}

char *json_print(cJSON *item) {
        if (json_fix_utf8(item) < 0)
                return NULL;
        return cJSON_PrintUnformatted(item);
}

size_t json_find_escaped_nul(const char *text, size_t len) {
        bool in_string = false;

        for (size_t i = 0; i < len; i++) {
                if (!in_string) {
                        in_string = text[i] == '"';
                        continue;
                }
                if (text[i] == '"')
                        in_string = false;
                else if (text[i] == '\\' && i + 1 < len) {
                        if (text[i + 1] == 'u' && i + 5 < len && strncmp(text + i + 2, "0000", 4) == 0)
                                return i;
                        i++;
                }
        }
        return len;
}
