/*
 * pb-json-tool: cli/pb-json.c from the command line, for the cross-check
 * against python (pb-json-crosscheck.py) and by hand.
 *
 *   pb-json-tool [--proto-names] [--defaults] SET TYPE decode  < bytes  > JSON
 *   pb-json-tool [--proto-names] [--defaults] SET TYPE encode  < JSON   > bytes
 *   pb-json-tool [--proto-names] [--defaults] SET TYPE batch
 *
 * SET is a serialized FileDescriptorSet, TYPE a full message name. In batch
 * mode each stdin line is "d HEX" (decode the bytes) or "e JSON" (encode a
 * one-line JSON text) and each answer one line: "ok JSON", "ok HEX", or
 * "err MESSAGE".
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pb-dynamic.h"
#include "pb-json.h"
#include "util.h"

static int read_all(FILE *f, char **ret, size_t *ret_size) {
        size_t n = 0, cap = 4096;
        char *buf = malloc(cap + 1);

        if (!buf)
                return -ENOMEM;
        for (;;) {
                size_t k;

                if (n == cap) {
                        char *b = realloc(buf, cap * 2 + 1);

                        if (!b) {
                                free(buf);
                                return -ENOMEM;
                        }
                        buf = b;
                        cap *= 2;
                }
                k = fread(buf + n, 1, cap - n, f);
                n += k;
                if (k == 0)
                        break;
        }
        buf[n] = 0;
        *ret = buf;
        *ret_size = n;
        return 0;
}

static int hex_value(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1;
}

static void batch_line(const ProtobufCMessageDescriptor *desc, unsigned flags, char *line) {
        _cleanup_(freep) char *error = NULL;
        size_t len = strlen(line);

        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
                line[--len] = 0;
        if (len >= 2 && line[0] == 'd' && line[1] == ' ') {
                _cleanup_(freep) uint8_t *bytes = malloc(len / 2 + 1);
                _cleanup_(freep) char *json = NULL;
                size_t n = 0;

                if (!bytes)
                        abort();
                for (size_t i = 2; i + 1 < len; i += 2) {
                        int hi = hex_value(line[i]), lo = hex_value(line[i + 1]);

                        if (hi < 0 || lo < 0) {
                                printf("err bad hex\n");
                                return;
                        }
                        bytes[n++] = (uint8_t) (hi << 4 | lo);
                }
                if (pbjson_decode(desc, bytes, n, flags, &json, &error) < 0)
                        printf("err %s\n", error ?: "?");
                else
                        printf("ok %s\n", json);
        } else if (len >= 2 && line[0] == 'e' && line[1] == ' ') {
                _cleanup_(freep) uint8_t *bytes = NULL;
                size_t n;

                if (pbjson_encode(desc, line + 2, flags, &bytes, &n, &error) < 0) {
                        printf("err %s\n", error ?: "?");
                        return;
                }
                printf("ok ");
                for (size_t i = 0; i < n; i++)
                        printf("%02x", bytes[i]);
                printf("\n");
        } else {
                printf("err bad request\n");
        }
}

int main(int argc, char **argv) {
        _cleanup_(pbdyn_pool_freep) PbdynPool *pool = NULL;
        const ProtobufCMessageDescriptor *desc;
        _cleanup_(freep) char *set = NULL, *input = NULL, *error = NULL;
        unsigned flags = 0;
        size_t set_size, input_size;
        FILE *f;
        int i = 1;

        for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
                if (strcmp(argv[i], "--proto-names") == 0)
                        flags |= PBJSON_PROTO_NAMES;
                else if (strcmp(argv[i], "--defaults") == 0)
                        flags |= PBJSON_INCLUDE_DEFAULTS;
                else if (strcmp(argv[i], "--pretty") == 0)
                        flags |= PBJSON_PRETTY;
                else
                        break;
        }
        if (argc - i != 3) {
                fprintf(stderr, "usage: %s [--proto-names] [--defaults] [--pretty] SET TYPE decode|encode|batch\n",
                        argv[0]);
                return 2;
        }
        f = fopen(argv[i], "re");
        if (!f || read_all(f, &set, &set_size) < 0) {
                fprintf(stderr, "%s: %m\n", argv[i]);
                return 1;
        }
        fclose(f);
        if (pbdyn_pool_new(&pool) < 0 || pbdyn_pool_add_set(pool, set, set_size) < 0) {
                fprintf(stderr, "%s: %s\n", argv[i], pool ? pbdyn_pool_error(pool) : "out of memory");
                return 1;
        }
        desc = pbdyn_pool_find_message(pool, argv[i + 1]);
        if (!desc) {
                fprintf(stderr, "no message type %s\n", argv[i + 1]);
                return 1;
        }

        if (strcmp(argv[i + 2], "batch") == 0) {
                char *line = NULL;
                size_t cap = 0;

                setvbuf(stdout, NULL, _IOLBF, 0);
                while (getline(&line, &cap, stdin) > 0)
                        batch_line(desc, flags, line);
                free(line);
                return 0;
        }
        if (read_all(stdin, &input, &input_size) < 0)
                return 1;
        if (strcmp(argv[i + 2], "decode") == 0) {
                _cleanup_(freep) char *json = NULL;

                if (pbjson_decode(desc, input, input_size, flags, &json, &error) < 0) {
                        fprintf(stderr, "%s\n", error ?: "out of memory");
                        return 1;
                }
                printf("%s\n", json);
                return 0;
        }
        if (strcmp(argv[i + 2], "encode") == 0) {
                _cleanup_(freep) uint8_t *bytes = NULL;
                size_t n;

                if (pbjson_encode(desc, input, flags, &bytes, &n, &error) < 0) {
                        fprintf(stderr, "%s\n", error ?: "out of memory");
                        return 1;
                }
                fwrite(bytes, 1, n, stdout);
                return 0;
        }
        fprintf(stderr, "unknown mode %s\n", argv[i + 2]);
        return 2;
}
