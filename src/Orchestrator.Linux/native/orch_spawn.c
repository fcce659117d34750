/*
 * orch_spawn: starts a container process. The only C in Orchestrator.
 *
 * Why C: a .NET process is multithreaded before Main; unshare/setns from managed code move only
 * the calling thread, and a forked child must never run managed code. So managed code compiles
 * the container into one flat plan (struct orch_plan, all strings and arrays already laid out),
 * and this file clones and, in the child, does only raw system calls up to execve: no malloc,
 * no stdio, no locks. Errors travel back as (stage, errno) records over a close-on-exec pipe.
 *
 * The order of the child's steps follows runc/crun: namespaces at clone time, wait for the
 * parent to place us in our cgroups, then mounts (made private first so nothing propagates to
 * the host), pivot_root, masks, hostname, sysctls, rlimits, identity and capabilities, and
 * last no_new_privs and seccomp, right before execve, so that the filter does not block our own
 * setup calls (setuid, capset, chdir, close_range…) whatever noNewPrivileges says.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <linux/capability.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <spawn.h>
#include <poll.h>

extern char **environ;

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

/* Stages, reported with errno when the child fails; mirrored in SpawnStage.cs. */
enum orch_stage {
    ST_OK = 0, ST_SYNC = 1, ST_SETNS = 2, ST_MOUNT_PRIVATE = 3, ST_ROOTFS_BIND = 4, ST_MOUNT = 5,
    ST_PIVOT = 6, ST_MASK = 7, ST_READONLY_PATH = 8, ST_READONLY_ROOT = 9, ST_HOSTNAME = 10,
    ST_SYSCTL = 11, ST_RLIMIT = 12, ST_OOM_SCORE = 13, ST_GROUPS = 14, ST_GID = 15, ST_UID = 16,
    ST_CAPS = 17, ST_CWD = 18, ST_EXEC_FIFO = 19, ST_NO_NEW_PRIVS = 20, ST_SECCOMP = 21,
    ST_EXEC = 22, ST_CLOSE_FDS = 23, ST_STDIO = 24, ST_FORK = 25, ST_TERMINAL = 26, ST_HOOK = 27,
    ST_DEVICE = 28, ST_APPARMOR = 29, ST_PROPAGATION = 30,
    ST_READY = 100, ST_CHILD_PID = 101,
    ST_WARN_AMBIENT = 102 /* not a failure: err is a capability that could not be raised (as runc: warn) */
};

struct orch_mount {
    const char *source;      /* NULL for none */
    const char *target;      /* absolute, already resolved inside the rootfs on the host */
    const char *fstype;      /* NULL for bind */
    unsigned long flags;     /* MS_* for the mount itself */
    const char *data;        /* fs-specific options, or NULL */
    unsigned long propagation; /* MS_SHARED/MS_SLAVE/MS_PRIVATE/MS_UNBINDABLE (+MS_REC) or 0 */
    int op;                  /* OP_MOUNT, or OP_MKDIR / OP_CREATE / OP_SYMLINK (source -> target) */
    int remount_flags;       /* non-zero: a bind that needs MS_REMOUNT|MS_BIND|flags (ro, nosuid…) */
};

/* What a mount entry does: most are mounts; the others make mount points and links inside
 * filesystems the child has just mounted (a fresh /dev tmpfs), which the parent cannot see. */
enum orch_op { OP_MOUNT = 0, OP_MKDIR = 1, OP_CREATE = 2, OP_SYMLINK = 3,
               OP_MKNOD = 4 /* flags: st_mode (type | permissions), propagation: dev_t */,
               OP_CHOWN = 5 /* flags: uid, propagation: gid */,
               OP_MOUNT_COPYUP = 6 /* a tmpfs mount (as OP_MOUNT) that gets the directory's content first (tmpcopyup) */ };

struct orch_rlimit { int resource; uint64_t soft; uint64_t hard; };

/* A hook run by the child itself, in the container's namespaces. */
struct orch_hook { const char *path; char *const *argv; char *const *envp; };

struct orch_plan {
    int clone_flags;                 /* CLONE_NEW* to create */
    int n_join; const int *join_fds; const int *join_types; /* namespaces to setns, in order */
    const char *rootfs;              /* absolute host path; NULL: no mount namespace work */
    int readonly_root;
    unsigned long root_propagation;  /* MS_PRIVATE|MS_REC by default, or MS_SLAVE|MS_REC */
    int n_mounts; const struct orch_mount *mounts;
    int n_masked; const char *const *masked;          /* paths inside the container */
    int n_readonly; const char *const *readonly_paths;
    const char *hostname;            /* NULL: leave */
    int n_sysctl; const char *const *sysctl_paths; const char *const *sysctl_values; /* /proc/sys/... */
    int n_rlimits; const struct orch_rlimit *rlimits;
    int set_oom_score; int oom_score_adj;
    uint32_t uid, gid; int n_groups; const uint32_t *groups;
    uint64_t cap_bounding, cap_effective, cap_permitted, cap_inheritable, cap_ambient;
    int no_new_privs;
    const struct sock_fprog *seccomp; /* NULL: none */
    int umask_value;                 /* -1: leave */
    const char *cwd;
    const char *path;                /* the program to exec, resolved by the caller (inside the rootfs) */
    char *const *argv; char *const *envp;
    int stdin_fd, stdout_fd, stderr_fd; /* -1: inherit */
    int keep_fds;                    /* fds 3 .. 3+keep_fds-1 are passed (LISTEN_FDS style) */
    int sync_fd;                     /* child reads one byte: the parent has put it in its cgroups */
    int sync_write_fd;               /* the pipe's write end: the child closes its copy first, so the parent's death is EOF */
    int sync_late;                   /* 1: do the mount phase before waiting on sync_fd (see below) */
    int unshare_cgroupns;            /* 1: unshare(CLONE_NEWCGROUP) once in the container's cgroup */
    int become_root;                 /* 1 (new user namespace): setresuid/gid(0) once the maps exist */
    int fork_after_join;             /* 1 (exec into a pid namespace): fork after setns, report the child */
    int no_pivot;                    /* 1: MS_MOVE the rootfs onto / and chroot (rootfs on a ramdisk) */
    int terminal;                    /* 1: a new pty from the container's devpts becomes stdio */
    int console_fd;                  /* where the pty master goes (SCM_RIGHTS), with terminal */
    unsigned short console_rows, console_cols;
    int n_create_hooks; const struct orch_hook *create_hooks; /* createContainer: before pivot_root */
    int n_start_hooks; const struct orch_hook *start_hooks;   /* startContainer: at start, before exec */
    int cgroup_fd;                   /* cgroup v2 directory: clone3(CLONE_INTO_CGROUP) there, or -1 */
    int report_fd;                   /* child writes (stage, errno) records; close-on-exec */
    int exec_fifo_fd;                /* the exec fifo, opened read-write by the parent, or -1: exec at once */
    /* Appended (keep the order above for the C# mirror). */
    int no_mount_ns;                 /* 1: the container shares the runtime's mount namespace: no
                                      * private/bind/pivot of our own, mounts land in that namespace
                                      * and the root is entered with chroot */
    unsigned long root_propagation_final; /* linux.rootfsPropagation applied to / after pivot_root, or 0 */
    const char *apparmor_profile;    /* NULL: none; else "exec <profile>" is written before execve */
    const char *domainname;          /* NULL: leave */
};

struct orch_report { int32_t stage; int32_t err; };

static void report(int fd, int stage, int err) {
    struct orch_report r = { stage, err };
    ssize_t n;
    do { n = write(fd, &r, sizeof r); } while (n < 0 && errno == EINTR);
}

static __attribute__((noreturn)) void fail(const struct orch_plan *p, int stage) {
    report(p->report_fd, stage, errno);
    _exit(127);
}

static int write_file(const char *path, const char *value) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t len = strlen(value);
    ssize_t n = write(fd, value, len);
    int saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)len ? 0 : -1;
}

static void fmt_int(char *buf, int v) {
    char tmp[16]; int i = 0, neg = v < 0; unsigned int u = neg ? -(unsigned int)v : (unsigned int)v;
    do { tmp[i++] = (char)('0' + u % 10); u /= 10; } while (u);
    int j = 0; if (neg) buf[j++] = '-';
    while (i) buf[j++] = tmp[--i];
    buf[j] = 0;
}

/* The bounding set is dropped while still root: it needs CAP_SETPCAP in the effective set,
 * which a change to a non-zero uid clears even with PR_SET_KEEPCAPS. */
static int drop_bounding(const struct orch_plan *p) {
    for (int cap = 0; cap <= 63; cap++) {
        if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0) break; /* beyond the kernel's last cap */
        if (!(p->cap_bounding & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) return -1;
    }
    return 0;
}

/* Sends one fd over a unix socket (SCM_RIGHTS) with a short name as the payload, as runc's
 * console socket protocol does. */
int orch_send_fd(int sock, int fd, const char *name) {
    char control[CMSG_SPACE(sizeof(int))];
    memset(control, 0, sizeof control);
    struct iovec iov = { (void *)name, strlen(name) };
    struct msghdr msg = { 0 };
    msg.msg_iov = &iov; msg.msg_iovlen = 1;
    msg.msg_control = control; msg.msg_controllen = sizeof control;
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET; cmsg->cmsg_type = SCM_RIGHTS; cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
    ssize_t n;
    do { n = sendmsg(sock, &msg, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n < 0 ? -1 : 0;
}

/* Receives one fd sent by orch_send_fd; returns it (close-on-exec) or -1. */
int orch_recv_fd(int sock) {
    char control[CMSG_SPACE(sizeof(int))];
    char name[256];
    struct iovec iov = { name, sizeof name };
    struct msghdr msg = { 0 };
    msg.msg_iov = &iov; msg.msg_iovlen = 1;
    msg.msg_control = control; msg.msg_controllen = sizeof control;
    ssize_t n;
    do { n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    if (!cmsg || cmsg->cmsg_type != SCM_RIGHTS) { errno = EBADMSG; return -1; }
    int fd;
    memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
    return fd;
}

/* A pty from the container's own devpts: the master goes to the parent, the slave becomes
 * the controlling terminal and stdio, owned by the process's user. */
static int setup_terminal(const struct orch_plan *p) {
    int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) return -1;
    int unlock = 0, ptn;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0 || ioctl(master, TIOCGPTN, &ptn) < 0) return -1;
    if (p->console_rows && p->console_cols) {
        struct winsize ws = { p->console_rows, p->console_cols, 0, 0 };
        if (ioctl(master, TIOCSWINSZ, &ws) < 0) return -1;
    }
    char path[32];
    memcpy(path, "/dev/pts/", 9); fmt_int(path + 9, ptn);
    int slave = open(path, O_RDWR | O_NOCTTY);
    if (slave < 0) return -1;
    if (fchown(slave, p->uid, p->gid) < 0) return -1;
    if (p->rootfs) {
        /* config-linux.md#default-devices: /dev/console is the pty slave, bind-mounted. */
        int fd = open("/dev/console", O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0) close(fd);
        else if (errno != EEXIST && errno != EROFS) return -1;
        if ((fd >= 0 || errno == EEXIST || access("/dev/console", F_OK) == 0) && mount(path, "/dev/console", NULL, MS_BIND, NULL) < 0) return -1;
    }
    if (orch_send_fd(p->console_fd, master, path) < 0) return -1;
    close(master);
    close(p->console_fd);
    if (setsid() < 0 || ioctl(slave, TIOCSCTTY, 0) < 0) return -1;
    for (int i = 0; i < 3; i++) if (dup2(slave, i) < 0) return -1;
    if (slave > 2) close(slave);
    return 0;
}

/* Closes every fd from `from` up, except a and b (close_range has no holes, so in pieces). */
static int close_fds_except(int from, int a, int b) {
    if (a > b) { int t = a; a = b; b = t; }
    int keep[2] = { a, b };
    unsigned int next = (unsigned int)from;
    for (int i = 0; i < 2; i++) {
        if (keep[i] < from) continue;
        if ((unsigned int)keep[i] > next && syscall(SYS_close_range, next, (unsigned int)keep[i] - 1, 0) < 0) return -1;
        next = (unsigned int)keep[i] + 1;
    }
    return (int)syscall(SYS_close_range, next, ~0U, 0);
}

/*
 * Without no_new_privs, installing a seccomp filter needs CAP_SYS_ADMIN in the effective set. The
 * filter goes on last, right before execve (runc's and crun's order: none of our own setup calls
 * may meet it), so CAP_SYS_ADMIN stays effective and permitted until then when we hold it now.
 * That changes nothing the program sees: execve computes the new permitted and effective sets
 * from the inheritable, bounding and ambient sets and the file, never from the old permitted or
 * effective ones (capabilities(7), "Transformation of capabilities during execve()").
 */
static uint64_t seccomp_admin_cap(const struct orch_plan *p) {
    if (!p->seccomp || p->no_new_privs) return 0;
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct now[2];
    if (syscall(SYS_capget, &hdr, now) < 0) return 0;
    return (now[0].permitted & (1U << CAP_SYS_ADMIN)) ? (1ULL << CAP_SYS_ADMIN) : 0;
}

static int set_caps(const struct orch_plan *p, uint64_t extra) {
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    uint64_t effective = p->cap_effective | extra, permitted = p->cap_permitted | extra;
    data[0].effective = (uint32_t)effective; data[1].effective = (uint32_t)(effective >> 32);
    data[0].permitted = (uint32_t)permitted; data[1].permitted = (uint32_t)(permitted >> 32);
    data[0].inheritable = (uint32_t)p->cap_inheritable; data[1].inheritable = (uint32_t)(p->cap_inheritable >> 32);
    if (syscall(SYS_capset, &hdr, data) < 0) return -1;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) return -1;
    return 0;
}

/* The container's state for hooks arrives from the parent after the cgroup move (only then is
 * the pid known); a static buffer, because the child must not allocate. */
static char hook_state[16384];
static size_t hook_state_len;

/*
 * Waits until the parent has moved us into the container's cgroups, then enters a new cgroup
 * namespace rooted there. Moving a task between cgroups costs a synchronize_rcu() in the kernel
 * (about 9 ms here): when nothing in the mount phase depends on the cgroup, the parent pays it
 * while the child mounts (sync_late), instead of one after the other.
 */
static void wait_for_cgroup(const struct orch_plan *p) {
    char go;
    ssize_t n;
    do { n = read(p->sync_fd, &go, 1); } while (n < 0 && errno == EINTR);
    if (n != 1) { if (n == 0) errno = EPIPE; fail(p, ST_SYNC); }
    if (p->n_create_hooks || p->n_start_hooks) {
        /* The parent follows "go" with the hooks' state: a 4-byte length, then the JSON. (Not
         * "until EOF": the parent keeps the write end open until we have started.) */
        uint32_t len = 0;
        size_t got = 0;
        while (got < sizeof len) {
            n = read(p->sync_fd, (char *)&len + got, sizeof len - got);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) { errno = EPIPE; fail(p, ST_SYNC); }
            got += (size_t)n;
        }
        if (len > sizeof hook_state) { errno = E2BIG; fail(p, ST_SYNC); }
        hook_state_len = 0;
        while (hook_state_len < len) {
            n = read(p->sync_fd, hook_state + hook_state_len, len - hook_state_len);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) { errno = EPIPE; fail(p, ST_SYNC); }
            hook_state_len += (size_t)n;
        }
    }
    close(p->sync_fd);
    /* In a new user namespace our host ids are unmapped until the parent has written the maps;
     * then become the namespace's root, or every file we create fails with EOVERFLOW. */
    if (p->become_root) {
        if (syscall(SYS_setresgid, 0, 0, 0) < 0) fail(p, ST_GID);
        if (syscall(SYS_setresuid, 0, 0, 0) < 0) fail(p, ST_UID);
    }
    /* The namespace's root is our cgroup at the time of unshare: it must come after the move. */
    if (p->unshare_cgroupns && unshare(CLONE_NEWCGROUP) < 0) fail(p, ST_SYNC);
}

/* Runs one hook: its stdin is the state JSON; a non-zero exit fails the container. */
static int run_hook(const struct orch_hook *h) {
    int in[2];
    if (pipe2(in, O_CLOEXEC) < 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(in[0], 0);
        execve(h->path, h->argv, h->envp);
        _exit(127);
    }
    close(in[0]);
    size_t off = 0;
    while (off < hook_state_len) {
        ssize_t n = write(in[1], hook_state + off, hook_state_len - off);
        if (n < 0) { if (errno == EINTR) continue; break; } /* EPIPE: the hook need not read it */
        off += (size_t)n;
    }
    close(in[1]);
    int status;
    while (waitpid(pid, &status, 0) < 0) if (errno != EINTR) return -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) { errno = ECHILD; return -1; }
    return 0;
}

/* tmpcopyup: the content of a directory a tmpfs is mounted over is copied up into it, as runc
 * and crun do (podman's --read-only mounts /run, /tmp and /var/tmp that way). The old directory
 * stays reachable through an fd opened before the mount. Raw calls and static buffers only:
 * the child must not allocate. Files keep their mode, owner and times. */
static char copy_buf[65536];

struct orch_dirent64 { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type; char name[]; };

static int copy_attrs(int to_dir, const char *name, const struct stat *st, int is_link) {
    if (fchownat(to_dir, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0) return -1;
    if (!is_link && fchmodat(to_dir, name, st->st_mode & 07777, 0) < 0) return -1; /* after chown, which clears set-id bits */
    struct timespec times[2] = { st->st_atim, st->st_mtim };
    return utimensat(to_dir, name, times, AT_SYMLINK_NOFOLLOW);
}

static int copy_file(int from_dir, int to_dir, const char *name, const struct stat *st) {
    int in = openat(from_dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0) return -1;
    int out = openat(to_dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, st->st_mode & 0777);
    if (out < 0) { int e = errno; close(in); errno = e; return -1; }
    int rc = 0;
    for (;;) {
        ssize_t n = read(in, copy_buf, sizeof copy_buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { rc = (int)n; break; }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, copy_buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) { rc = -1; break; }
            off += w;
        }
        if (rc < 0) break;
    }
    int e = errno;
    close(in); close(out);
    errno = e;
    return rc;
}

static int copy_tree(int from_dir, int to_dir, int depth) {
    if (depth > 64) { errno = ELOOP; return -1; }
    char dents[2048];
    for (;;) {
        long n = syscall(SYS_getdents64, from_dir, dents, sizeof dents);
        if (n < 0) return -1;
        if (n == 0) return 0;
        for (long off = 0; off < n;) {
            struct orch_dirent64 *d = (struct orch_dirent64 *)(dents + off);
            off += d->reclen;
            const char *name = d->name;
            if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) continue;
            struct stat st;
            if (fstatat(from_dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) return -1;
            if (S_ISDIR(st.st_mode)) {
                if (mkdirat(to_dir, name, 0700) < 0) return -1;
                int from = openat(from_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (from < 0) return -1;
                int to = openat(to_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (to < 0) { int e = errno; close(from); errno = e; return -1; }
                int rc = copy_tree(from, to, depth + 1);
                int e = errno;
                close(from); close(to);
                errno = e;
                if (rc < 0) return -1;
            } else if (S_ISREG(st.st_mode)) {
                if (copy_file(from_dir, to_dir, name, &st) < 0) return -1;
            } else if (S_ISLNK(st.st_mode)) {
                ssize_t len = readlinkat(from_dir, name, copy_buf, sizeof copy_buf - 1);
                if (len < 0) return -1;
                copy_buf[len] = 0;
                if (symlinkat(copy_buf, to_dir, name) < 0) return -1;
            } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode)) {
                if (mknodat(to_dir, name, st.st_mode, st.st_rdev) < 0) return -1;
            } else {
                continue; /* a socket: meaningless without its listener */
            }
            if (copy_attrs(to_dir, name, &st, S_ISLNK(st.st_mode)) < 0) return -1;
        }
    }
}

/* Mounts m (a tmpfs) over its target after copying the target's content into it. A read-only
 * tmpfs is filled first and made read-only after. */
static int mount_copyup(const struct orch_mount *m) {
    int old = open(m->target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (old < 0) return -1;
    struct stat st;
    int rc = -1;
    if (fstat(old, &st) < 0) goto out;
    if (mount(m->source, m->target, m->fstype, m->flags & ~MS_RDONLY, m->data) < 0) goto out;
    int fresh = open(m->target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fresh < 0) goto out;
    rc = copy_tree(old, fresh, 0);
    if (rc == 0 && (fchown(fresh, st.st_uid, st.st_gid) < 0 || fchmod(fresh, st.st_mode & 07777) < 0)) rc = -1;
    int e = errno;
    close(fresh);
    errno = e;
    if (rc == 0 && (m->flags & MS_RDONLY) && mount(NULL, m->target, NULL, MS_REMOUNT | m->flags, m->data) < 0) rc = -1;
out:;
    int saved = errno;
    close(old);
    errno = saved;
    return rc;
}

static int child_main(void *arg) {
    const struct orch_plan *p = arg;
    char buf[4096];
    int node_existed = 0;

    /* The parent blocked every signal around clone: restore defaults, then unblock. */
    struct sigaction dfl; memset(&dfl, 0, sizeof dfl); dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < 65; sig++) if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, NULL);
    sigset_t none; sigemptyset(&none); sigprocmask(SIG_SETMASK, &none, NULL);

    /* Never dumpable while we hold host fds: no ptrace or /proc/pid/fd access from the container. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);

    /* Our copy of the sync pipe's write end (no CLONE_FILES: the parent's stays open) goes at
     * once: if the parent dies before it says "go" (orchd killed mid-spawn), the read below sees
     * EOF and we exit, instead of waiting forever while holding orchd's stdio, its lock and the
     * node's fds (a SIGKILLed test node left such an orphan, and its harness waited on its pipes). */
    if (p->sync_write_fd >= 0) close(p->sync_write_fd);

    if (!p->sync_late) wait_for_cgroup(p);

    for (int i = 0; i < p->n_join; i++)
        if (setns(p->join_fds[i], p->join_types[i]) < 0) fail(p, ST_SETNS);

    /* setns(CLONE_NEWPID) places our children, not us, in the namespace: fork once more. With
     * CLONE_PARENT the new process is the runtime's own child, not ours (runc's nsexec does the
     * same): when we exit it is not reparented to a subreaper (containerd's shim) or init, which
     * could reap it before the runtime holds a pidfd of it. The parent learns its pid from us. */
    if (p->fork_after_join) {
        pid_t child = (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, NULL, NULL, 0);
        if (child < 0) fail(p, ST_FORK);
        if (child > 0) { report(p->report_fd, ST_CHILD_PID, (int)child); _exit(0); }
    }

    if (p->rootfs) {
        /* Nothing we mount may propagate back to the host. Without a mount namespace of our own
         * there is nothing to isolate: / is the runtime's, and must not be changed. */
        if (!p->no_mount_ns) {
            if (mount(NULL, "/", NULL, p->root_propagation ? p->root_propagation : (MS_REC | MS_PRIVATE), NULL) < 0) fail(p, ST_MOUNT_PRIVATE);
            if (mount(p->rootfs, p->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0) fail(p, ST_ROOTFS_BIND);
        }
        for (int i = 0; i < p->n_mounts; i++) {
            const struct orch_mount *m = &p->mounts[i];
            if (m->op == OP_MKDIR) {
                if (mkdir(m->target, 0755) < 0 && errno != EEXIST) fail(p, ST_MOUNT);
                continue;
            }
            if (m->op == OP_CREATE) {
                int fd = open(m->target, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
                if (fd < 0 && errno != EEXIST) fail(p, ST_MOUNT);
                if (fd >= 0) close(fd);
                continue;
            }
            if (m->op == OP_SYMLINK) {
                if (symlink(m->source, m->target) < 0 && errno != EEXIST) fail(p, ST_MOUNT);
                continue;
            }
            if (m->op == OP_MKNOD) {
                node_existed = 0;
                if (mknod(m->target, (mode_t)m->flags, (dev_t)m->propagation) < 0) {
                    if (errno != EEXIST) fail(p, ST_DEVICE);
                    /* config-linux.md#devices: a file already at path that does not match the
                     * device is an error. One that matches (a default device bound from the
                     * host) is left as it is: chmod through a bind would change the host's node. */
                    struct stat st;
                    if (stat(m->target, &st) < 0) fail(p, ST_DEVICE);
                    int is_fifo = S_ISFIFO((mode_t)m->flags);
                    if ((st.st_mode & S_IFMT) != ((mode_t)m->flags & S_IFMT) || (!is_fifo && st.st_rdev != (dev_t)m->propagation)) {
                        errno = EEXIST;
                        fail(p, ST_DEVICE);
                    }
                    node_existed = 1;
                    continue;
                }
                if (chmod(m->target, (mode_t)m->flags & 07777) < 0) fail(p, ST_DEVICE); /* not the umask's */
                continue;
            }
            if (m->op == OP_CHOWN) {
                if (!node_existed && lchown(m->target, (uid_t)m->flags, (gid_t)m->propagation) < 0) fail(p, ST_DEVICE);
                node_existed = 0;
                continue;
            }
            if (m->op == OP_MOUNT_COPYUP) {
                if (mount_copyup(m) < 0) fail(p, ST_MOUNT);
            } else if (mount(m->source, m->target, m->fstype, m->flags, m->data) < 0) fail(p, ST_MOUNT);
            if (m->remount_flags && mount(NULL, m->target, NULL, MS_REMOUNT | MS_BIND | (unsigned long)m->remount_flags, NULL) < 0) fail(p, ST_MOUNT);
            if (m->propagation && mount(NULL, m->target, NULL, m->propagation, NULL) < 0) fail(p, ST_MOUNT);
        }
        for (int i = 0; i < p->n_create_hooks; i++)
            if (run_hook(&p->create_hooks[i]) < 0) fail(p, ST_HOOK);

        if (chdir(p->rootfs) < 0) fail(p, ST_PIVOT);
        if (p->no_mount_ns) {
            /* pivot_root would move the root of every process in the runtime's namespace. */
            if (chroot(".") < 0) fail(p, ST_PIVOT);
        } else if (p->no_pivot) {
            /* For a rootfs on ramfs, where pivot_root is impossible: weaker (the old root stays
             * reachable to a process with CAP_SYS_CHROOT), which is why it is opt-in, as in runc. */
            if (mount(p->rootfs, "/", NULL, MS_MOVE, NULL) < 0) fail(p, ST_PIVOT);
            if (chroot(".") < 0) fail(p, ST_PIVOT);
        } else {
            /* pivot_root(".", "."): the old root ends up stacked under the new one; detach it. */
            if (syscall(SYS_pivot_root, ".", ".") < 0) fail(p, ST_PIVOT);
            if (umount2(".", MNT_DETACH) < 0) fail(p, ST_PIVOT);
        }
        if (chdir("/") < 0) fail(p, ST_PIVOT);
        /* rootfsPropagation on the new root, once it is the root (as runc: after pivot_root, which
         * refuses a shared new root). */
        if (!p->no_mount_ns && p->root_propagation_final && mount(NULL, "/", NULL, p->root_propagation_final, NULL) < 0) fail(p, ST_PROPAGATION);

        /* Sysctls before the read-only paths: /proc/sys is one of them (runc's order). */
        for (int i = 0; i < p->n_sysctl; i++)
            if (write_file(p->sysctl_paths[i], p->sysctl_values[i]) < 0) fail(p, ST_SYSCTL);

        for (int i = 0; i < p->n_masked; i++) {
            struct stat st;
            if (stat(p->masked[i], &st) < 0) { if (errno == ENOENT) continue; fail(p, ST_MASK); }
            if (S_ISDIR(st.st_mode)) {
                if (mount("tmpfs", p->masked[i], "tmpfs", MS_RDONLY, "size=0") < 0) fail(p, ST_MASK);
            } else if (mount("/dev/null", p->masked[i], NULL, MS_BIND, NULL) < 0) fail(p, ST_MASK);
        }
        for (int i = 0; i < p->n_readonly; i++) {
            if (mount(p->readonly_paths[i], p->readonly_paths[i], NULL, MS_BIND | MS_REC, NULL) < 0) {
                if (errno == ENOENT) continue;
                fail(p, ST_READONLY_PATH);
            }
            if (mount(NULL, p->readonly_paths[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) fail(p, ST_READONLY_PATH);
        }
    }

    if (p->sync_late) wait_for_cgroup(p);

    if (p->hostname && sethostname(p->hostname, strlen(p->hostname)) < 0) fail(p, ST_HOSTNAME);
    if (p->domainname && setdomainname(p->domainname, strlen(p->domainname)) < 0) fail(p, ST_HOSTNAME);
    if (p->rootfs && p->readonly_root && mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0) fail(p, ST_READONLY_ROOT);

    for (int i = 0; i < p->n_rlimits; i++) {
        struct rlimit rl = { (rlim_t)p->rlimits[i].soft, (rlim_t)p->rlimits[i].hard };
        if (setrlimit(p->rlimits[i].resource, &rl) < 0) fail(p, ST_RLIMIT);
    }
    if (p->set_oom_score) {
        fmt_int(buf, p->oom_score_adj);
        if (write_file("/proc/self/oom_score_adj", buf) < 0) fail(p, ST_OOM_SCORE);
    }

    if (p->terminal && setup_terminal(p) < 0) fail(p, ST_TERMINAL);

    /* Identity: keep capabilities across setuid, then set exactly the planned ones. */
    uint64_t seccomp_extra = seccomp_admin_cap(p);
    if (drop_bounding(p) < 0) fail(p, ST_CAPS);
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) fail(p, ST_CAPS);
    if (syscall(SYS_setgroups, p->n_groups, p->groups) < 0) fail(p, ST_GROUPS);
    if (syscall(SYS_setresgid, p->gid, p->gid, p->gid) < 0) fail(p, ST_GID);
    if (syscall(SYS_setresuid, p->uid, p->uid, p->uid) < 0) fail(p, ST_UID);
    if (set_caps(p, seccomp_extra) < 0) fail(p, ST_CAPS);
    /* Ambient capabilities as runc and crun: raised where the permitted and inheritable sets
     * allow it; any other is reported as a warning, not a failure (`runc spec` writes ambient
     * without inheritable). */
    for (int cap = 0; cap <= 63; cap++) {
        if (!(p->cap_ambient & (1ULL << cap))) continue;
        if (!((p->cap_permitted & p->cap_inheritable) & (1ULL << cap)) || prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
            report(p->report_fd, ST_WARN_AMBIENT, cap);
    }
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) fail(p, ST_CAPS);

    if (p->umask_value >= 0) umask((mode_t)p->umask_value);
    if (p->cwd && chdir(p->cwd) < 0) fail(p, ST_CWD);
    /* A cwd reached through a leaked host fd (/proc/self/fd/N) lies outside our root; the kernel
     * then reports it as "(unreachable)/…". Refuse it (runc CVE-2024-21626). */
    if (getcwd(buf, sizeof buf) == NULL || buf[0] != '/') { if (errno == 0) errno = EPERM; fail(p, ST_CWD); }

    /* stdio, then every other fd close-on-exec except the ones passed on purpose. */
    if (p->stdin_fd >= 0 && dup2(p->stdin_fd, 0) < 0) fail(p, ST_STDIO);
    if (p->stdout_fd >= 0 && dup2(p->stdout_fd, 1) < 0) fail(p, ST_STDIO);
    if (p->stderr_fd >= 0 && dup2(p->stderr_fd, 2) < 0) fail(p, ST_STDIO);
    if (syscall(SYS_close_range, 3 + p->keep_fds, ~0U, CLOSE_RANGE_CLOEXEC) < 0) fail(p, ST_CLOSE_FDS);

    if (p->exec_fifo_fd >= 0) {
        /* create: tell the parent we are set up, then block until `start` opens the fifo.
         * While we wait, hold nothing of the caller's but our stdio: a copy of its output pipe
         * (the .NET runtime dups stdio) would keep the caller waiting for EOF until we exit. */
        report(p->report_fd, ST_READY, 0);
        if (close_fds_except(3 + p->keep_fds, p->report_fd, p->exec_fifo_fd) < 0) fail(p, ST_CLOSE_FDS);
        /* The parent opened the fifo read-write before clone, so we open nothing here: a process
         * that is not root, lacks CAP_DAC_OVERRIDE or is in a user namespace could not open the
         * runtime's root-owned state. `start` writes one byte; we read it. Holding a write end
         * ourselves, the read blocks until then (never an early EOF). Our copy closes at execve,
         * which is how `start` knows the program runs. */
        char go;
        ssize_t n;
        do { n = read(p->exec_fifo_fd, &go, 1); } while (n < 0 && errno == EINTR);
        if (n != 1) { if (n == 0) errno = EPIPE; fail(p, ST_EXEC_FIFO); }
    }

    for (int i = 0; i < p->n_start_hooks; i++)
        if (run_hook(&p->start_hooks[i]) < 0) fail(p, ST_HOOK);

    if (p->apparmor_profile) {
        /* As runc: the profile applies at our execve. */
        memcpy(buf, "exec ", 5);
        size_t len = strlen(p->apparmor_profile);
        if (len > sizeof buf - 6) { errno = ENAMETOOLONG; fail(p, ST_APPARMOR); }
        memcpy(buf + 5, p->apparmor_profile, len + 1);
        if (write_file("/proc/self/attr/apparmor/exec", buf) < 0 && write_file("/proc/self/attr/exec", buf) < 0) fail(p, ST_APPARMOR);
    }

    /* Last, so that the filter meets none of our own calls: only execve itself. */
    if (p->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail(p, ST_NO_NEW_PRIVS);
    if (p->seccomp && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, p->seccomp, 0, 0) < 0) fail(p, ST_SECCOMP);

    execve(p->path, p->argv, p->envp);
    fail(p, ST_EXEC);
}

/* struct clone_args up to the cgroup field (kernel 5.7). */
struct orch_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

/*
 * On cgroup v2, clone3(CLONE_INTO_CGROUP) starts the child in its cgroup: no move afterwards,
 * so none of the RCU wait a move costs. Without a stack and without CLONE_VM the child runs on
 * a copy of this stack, as after fork. Returns the pid, 0 in the child, or -1 when the kernel
 * lacks it (the caller falls back to clone + move).
 */
static long clone_into_cgroup(const struct orch_plan *plan, int *pidfd) {
    struct orch_clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = (uint64_t)(unsigned int)plan->clone_flags | CLONE_PIDFD | CLONE_INTO_CGROUP;
    args.pidfd = (uint64_t)(uintptr_t)pidfd;
    args.exit_signal = SIGCHLD;
    args.cgroup = (uint64_t)plan->cgroup_fd;
    return syscall(SYS_clone3, &args, sizeof args);
}

/*
 * Clones the container's first process. Returns its pid (and its pidfd in *pidfd_out), or -1
 * with errno set; *in_cgroup_out says whether it was born in its cgroup (else the parent moves
 * it). The child waits for one byte on plan->sync_fd before doing anything else.
 */
int orch_spawn(const struct orch_plan *plan, int *pidfd_out, int *in_cgroup_out) {
    *in_cgroup_out = 0;
    if (plan->cgroup_fd >= 0) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int pidfd = -1;
        long pid = clone_into_cgroup(plan, &pidfd);
        if (pid == 0) {
            child_main((void *)plan);
            _exit(127);
        }
        int saved = errno;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (pid > 0) {
            *pidfd_out = pidfd;
            *in_cgroup_out = 1;
            return (int)pid;
        }
        if (saved != ENOSYS && saved != E2BIG && saved != EINVAL) { errno = saved; return -1; }
        /* An older kernel: fall through to clone, and the parent moves the child. */
    }
    const size_t stack_size = 256 * 1024;
    void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return -1;

    /* Block every signal so that no handler of the runtime runs in the child before it resets them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int pidfd = -1;
    int pid = clone(child_main, (char *)stack + stack_size, plan->clone_flags | CLONE_PIDFD | SIGCHLD, (void *)plan, &pidfd);
    int saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    /* The child has its own copy of the stack pages (no CLONE_VM): the parent's can go. */
    munmap(stack, stack_size);
    if (pid < 0) { errno = saved; return -1; }
    *pidfd_out = pidfd;
    return pid;
}

/* Syscall numbers by name for the target architecture, generated at build time from
 * <sys/syscall.h> (see OrchSpawn.targets): seccomp rules name syscalls, filters need numbers. */
struct orch_syscall { const char *name; int nr; };
static const struct orch_syscall orch_syscalls[] = {
#include "orch_syscalls.inc"
};

int orch_syscall_number(const char *name) {
    for (size_t i = 0; i < sizeof orch_syscalls / sizeof orch_syscalls[0]; i++)
        if (strcmp(orch_syscalls[i].name, name) == 0) return orch_syscalls[i].nr;
    return -1;
}

/* The AUDIT_ARCH_* value seccomp_data.arch holds for native syscalls. */
unsigned int orch_audit_arch(void) {
#if defined(__x86_64__)
    return 0xC000003E; /* AUDIT_ARCH_X86_64 */
#elif defined(__aarch64__)
    return 0xC00000B7; /* AUDIT_ARCH_AARCH64 */
#elif defined(__arm__)
    return 0x40000028; /* AUDIT_ARCH_ARM */
#else
#error "unsupported architecture"
#endif
}

/* pidfd_open(2), which glibc 2.36 wraps but older ones do not. */
int orch_pidfd_open(int pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

/* Orphaned descendants (an exec's grandchild) are reparented to us, so we can reap them. */
int orch_set_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

/*
 * Starts an OCI hook in the runtime's namespaces: `path` is executed with `argv` exactly as the
 * spec gives them (args[0] is argv[0], not the path), `envp` as given (NULL: ours), stdin from
 * `in_fd`, stdout and stderr to `out_fd`, every signal at its default (the .NET runtime ignores
 * SIGPIPE, which execve would pass on). Returns the pid, or -1 with errno.
 */
int orch_spawn_hook(const char *path, char *const *argv, char *const *envp, int in_fd, int out_fd) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    sigset_t all, none;
    sigfillset(&all); sigdelset(&all, SIGKILL); sigdelset(&all, SIGSTOP);
    sigemptyset(&none);
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc) { errno = rc; return -1; }
    posix_spawn_file_actions_adddup2(&actions, in_fd, 0);
    posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
    posix_spawn_file_actions_adddup2(&actions, out_fd, 2);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    pid_t pid;
    rc = posix_spawn(&pid, path, &actions, &attr, argv, envp ? envp : environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc) { errno = rc; return -1; }
    return (int)pid;
}

/* Struct sizes, checked by the managed side at startup against its own layout. */
int orch_spawn_abi(int which) {
    switch (which) {
    case 0: return (int)sizeof(struct orch_plan);
    case 1: return (int)sizeof(struct orch_mount);
    case 2: return (int)sizeof(struct orch_rlimit);
    case 3: return (int)sizeof(struct orch_report);
    case 4: return (int)sizeof(struct orch_hook);
    default: return -1;
    }
}

/*
 * `orchd stdio-holder`: what keeps a container's stdin and terminal while orchd is down (a
 * restart, an upgrade, a crash), so that they outlive it as the container does. Runs without
 * the .NET runtime in the AOT build (orchd's C main calls it), a few pages of memory.
 *
 * In `dir`, the container's run directory: stdin.fifo, when the workload has stdin, is held open
 * read-write (its reader never sees end-of-file between attaches); with a terminal (`master_fd`,
 * a descriptor of process `source_pid`, taken with pidfd_getfd), what the container writes on it
 * goes to tty.fifo (which orchd relays to the log and to attached clients), what arrives in
 * stdin.fifo is typed on it, and "ROWS COLS\n" lines in resize.fifo set its size. It exits once
 * the container's first process `container_pid` has exited and the terminal is drained.
 * Prints "ok\n" on stdout once it holds everything, then closes its stdio.
 */
static int open_in(const char *dir, const char *name, int flags) {
    char path[4096];
    size_t n = strlen(dir);
    if (n + strlen(name) + 2 > sizeof path) { errno = ENAMETOOLONG; return -1; }
    memcpy(path, dir, n);
    path[n] = '/';
    strcpy(path + n + 1, name);
    return open(path, flags | O_CLOEXEC);
}

static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += w; len -= (size_t)w;
    }
    return 0;
}

static void apply_sizes(int master, char *pending, size_t *used, int ctl) {
    ssize_t r = read(ctl, pending + *used, 63 - *used);
    if (r <= 0) return;
    *used += (size_t)r;
    pending[*used] = 0;
    char *line = pending, *nl;
    while ((nl = strchr(line, '\n')) != NULL) {
        *nl = 0;
        unsigned rows = 0, cols = 0;
        char *p = line;
        while (*p >= '0' && *p <= '9') rows = rows * 10 + (unsigned)(*p++ - '0');
        while (*p == ' ') p++;
        while (*p >= '0' && *p <= '9') cols = cols * 10 + (unsigned)(*p++ - '0');
        if (rows > 0 && rows <= 65535 && cols > 0 && cols <= 65535) {
            struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
            (void)ioctl(master, TIOCSWINSZ, &ws);
        }
        line = nl + 1;
    }
    *used = strlen(line);
    memmove(pending, line, *used);
    if (*used >= 63) *used = 0; /* not a size: dropped */
}

int orch_stdio_relay(const char *dir, int source_pid, int master_fd, int container_pid) {
    (void)setsid(); /* a signal to orchd's process group does not end it */
    int child = (int)syscall(SYS_pidfd_open, container_pid, 0);
    if (child < 0) return 3;
    int master = -1, out = -1, ctl = -1;
    if (master_fd >= 0) {
        int source = (int)syscall(SYS_pidfd_open, source_pid, 0);
        if (source < 0) return 4;
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
        master = (int)syscall(SYS_pidfd_getfd, source, master_fd, 0);
        close(source);
        if (master < 0) return 5;
        out = open_in(dir, "tty.fifo", O_RDWR);
        ctl = open_in(dir, "resize.fifo", O_RDWR | O_NONBLOCK);
        if (out < 0 || ctl < 0) return 6;
        (void)fcntl(out, F_SETPIPE_SZ, 1 << 20);
        (void)fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    }
    int in = open_in(dir, "stdin.fifo", O_RDWR | O_NONBLOCK); /* -1: no stdin */
    /* The log's FIFOs (and the terminal's), held so that what the container wrote just before it
     * ended, while orchd was down, is still there for the next orchd: a FIFO nobody holds drops
     * its contents. Released once orchd has read them. */
    int held[3] = { open_in(dir, "stdout.fifo", O_RDWR | O_NONBLOCK), open_in(dir, "stderr.fifo", O_RDWR | O_NONBLOCK),
                    out >= 0 ? -1 : open_in(dir, "tty.fifo", O_RDWR | O_NONBLOCK) };
    if (write_all(1, "ok\n", 3) != 0) return 7;
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) { dup2(null, 0); dup2(null, 1); dup2(null, 2); close(null); }

    static char buf[65536], typed[65536];
    char sizes[64];
    size_t sizes_used = 0, typed_len = 0, typed_off = 0;
    int exited = 0;
    for (;;) {
        struct pollfd fds[4];
        fds[0] = (struct pollfd){ .fd = exited ? -1 : child, .events = POLLIN };
        fds[1] = (struct pollfd){ .fd = master, .events = (short)(POLLIN | (typed_len > typed_off ? POLLOUT : 0)) };
        /* Input waits in its FIFO while the terminal does not take what was typed before. */
        fds[2] = (struct pollfd){ .fd = master >= 0 && typed_len == typed_off ? in : -1, .events = POLLIN };
        fds[3] = (struct pollfd){ .fd = master >= 0 ? ctl : -1, .events = POLLIN }; /* no terminal left: sizes wait unread */
        int ready = poll(fds, 4, exited ? 100 : -1);
        if (ready < 0) {
            if (errno == EINTR) continue;
            return 8;
        }
        if (fds[0].revents & POLLIN) exited = 1;
        if (master >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t r = read(master, buf, sizeof buf);
            if (r > 0) {
                if (write_all(out, buf, (size_t)r) != 0) return 9;
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                /* EIO: every process that had the terminal is gone */
                if (exited) break;
                fds[1].revents = 0;
                close(master);
                master = -1;
            }
        }
        if (master >= 0 && (fds[1].revents & POLLOUT) && typed_len > typed_off) {
            ssize_t w = write(master, typed + typed_off, typed_len - typed_off);
            if (w > 0) typed_off += (size_t)w;
            if (typed_off == typed_len) typed_off = typed_len = 0;
        }
        if (fds[2].revents & POLLIN) {
            ssize_t r = read(in, typed, sizeof typed);
            if (r > 0) { typed_len = (size_t)r; typed_off = 0; }
        }
        if (master >= 0 && (fds[3].revents & POLLIN)) apply_sizes(master, sizes, &sizes_used, ctl);
        if (exited && (ready == 0 || master < 0)) break; /* exited and the terminal has gone quiet */
    }
    /* Until orchd has read what is left (it may be down: then for as long as it takes). */
    for (;;) {
        int left = 0;
        for (int i = 0; i < 4; i++) {
            int fd = i < 3 ? held[i] : out, n = 0;
            if (fd >= 0 && ioctl(fd, FIONREAD, &n) == 0 && n > 0) left = 1;
        }
        if (!left) return 0;
        usleep(100 * 1000);
    }
}
