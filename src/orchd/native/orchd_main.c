/*
 * orchd's entry point in the AOT build (CustomNativeMain): everything goes to the managed Main,
 * except `orchd scope-holder` and `orchd stdio-holder`, which must not start the .NET runtime at all.
 *
 * The scope holder is the first process of the node's systemd scope on cgroup v2 (NodeCgroup):
 * a scope ends with its last process, and the holder keeps it while no container runs. Started
 * by the runtime, any orchd process costs about 6.5 MB of private memory before it runs a line
 * (the runtime rehydrates its type data into .hydrated at start); this one costs a few pages of
 * stack and libc. It sleeps in pause(2) until it is killed (orchd teardown, dpkg -r, the scope's
 * stop at shutdown).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int __managed__Main(int argc, char *argv[]);
int orch_stdio_relay(const char *dir, int source_pid, int master_fd, int container_pid);

int main(int argc, char *argv[])
{
    if (argc == 2 && strcmp(argv[1], "scope-holder") == 0) {
        /* Not in orchd's session: a signal to orchd's process group does not end it. */
        (void)setsid();
        for (;;)
            pause();
    }
    /* `orchd stdio-holder DIR ORCHD_PID MASTER_FD CONTAINER_PID`: a container's stdin and
     * terminal across orchd restarts (orch_spawn.c), without the runtime either. */
    if (argc == 6 && strcmp(argv[1], "stdio-holder") == 0)
        return orch_stdio_relay(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    return __managed__Main(argc, argv);
}
