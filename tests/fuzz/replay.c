/*
 * Runs a fuzz target's LLVMFuzzerTestOneInput() over files, without
 * libFuzzer: every `meson test` (plain, sanitizer and valgrind builds)
 * replays the seed corpora this way, so a seed that once crashed a target
 * keeps being checked. Arguments are files or directories of files.
 *
 * Each file runs in a child process, so that one failing input (the
 * targets abort) does not hide the others: all failures are listed.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuzz.h"

/* Targets that need no setup do not define it. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static int run_file(const char *path) {
        struct stat st;
        uint8_t *buf;
        size_t n = 0;
        int fd, status;
        pid_t pid;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        /* One byte more than needed, so that an empty file is no NULL buffer. */
        buf = malloc((size_t)st.st_size + 1);
        if (!buf) {
                close(fd);
                return -1;
        }
        while (n < (size_t)st.st_size) {
                ssize_t k = read(fd, buf + n, (size_t)st.st_size - n);

                if (k <= 0)
                        break;
                n += (size_t)k;
        }
        close(fd);

        fprintf(stderr, "%s (%zu bytes)\n", path, n);
        fflush(stderr);
        pid = fork();
        if (pid < 0) {
                free(buf);
                return -1;
        }
        if (pid == 0) {
                LLVMFuzzerTestOneInput(buf, n);
                free(buf);
                exit(EXIT_SUCCESS);     /* not _exit(): LeakSanitizer checks at exit */
        }
        free(buf);
        if (waitpid(pid, &status, 0) < 0)
                return -1;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "FAILED: %s (%s %d)\n", path,
                        WIFSIGNALED(status) ? "signal" : "exit status",
                        WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
                return -1;
        }
        return 0;
}

static int cmp(const void *a, const void *b) {
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir) {
        char **names = NULL;
        size_t n = 0;
        struct dirent *de;
        DIR *d;
        int r = 0;

        d = opendir(dir);
        if (!d) {
                fprintf(stderr, "%s: %s\n", dir, strerror(errno));
                return -1;
        }
        while ((de = readdir(d))) {
                char **grown;

                if (de->d_name[0] == '.')
                        continue;
                grown = realloc(names, (n + 1) * sizeof(*names));
                if (!grown)
                        break;
                names = grown;
                if (asprintf(&names[n], "%s/%s", dir, de->d_name) < 0)
                        break;
                n++;
        }
        closedir(d);

        /* Same order every run, so that a failure is reproducible. */
        qsort(names, n, sizeof(*names), cmp);
        for (size_t i = 0; i < n; i++) {
                if (run_file(names[i]) < 0)
                        r = -1;
                free(names[i]);
        }
        free(names);
        if (n == 0) {
                fprintf(stderr, "%s: no inputs\n", dir);
                r = -1;
        }
        return r;
}

int main(int argc, char **argv) {
        int r = 0;

        if (LLVMFuzzerInitialize)
                LLVMFuzzerInitialize(&argc, &argv);
        for (int i = 1; i < argc; i++) {
                struct stat st;

                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        r = -1;
                } else if (S_ISDIR(st.st_mode)) {
                        if (run_dir(argv[i]) < 0)
                                r = -1;
                } else if (run_file(argv[i]) < 0) {
                        r = -1;
                }
        }
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
