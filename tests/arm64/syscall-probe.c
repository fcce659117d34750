/* What a seccomp filter lets through, as one process sees it: built static for aarch64 and for
 * 32-bit arm (EABI), which an arm64 kernel runs with compat syscalls (another AUDIT_ARCH, other
 * syscall numbers). tests/arm64/in-vm.sh runs both in an orch-runc container with CAP_SYS_ADMIN,
 * so that only the filter can refuse unshare and mount. Prints one line per call. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static void report(const char *what, int rc) {
    printf("%s=%s\n", what, rc == 0 ? "allowed" : strerror(errno));
}

int main(void) {
    mkdir("/mnt", 0755);
    report("unshare", unshare(CLONE_NEWNET));
    report("mount", mount("none", "/mnt", "tmpfs", 0, NULL));
    int fd = open("/tmp/probe", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    int ok = fd >= 0 && write(fd, "data\n", 5) == 5 && close(fd) == 0;
    printf("ordinary=%s\n", ok ? "ok" : strerror(errno));
    printf("pid=%d\n", (int)getpid());
    return 0;
}
