#define _GNU_SOURCE
#include "CBodhiSpawn.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

struct spawn_request {
    const char *path;
    char *const *argv;
    char *const *envp;
    int output_fd;
    pid_t pid;
    int error;
    bool done;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static struct spawn_request *pending = NULL;
static pthread_once_t started = PTHREAD_ONCE_INIT;
static pid_t parent_pid;

static void close_descriptors_from(int first) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)first, ~0U, 0U) == 0) return;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    for (int fd = first; fd < (max > 0 ? max : 65536); fd++) close(fd);
}

// Runs in the child between fork and exec: async-signal-safe calls only.
static void exec_child(struct spawn_request *request, int report_fd) {
    int err;
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) goto fail;
    // The parent may have died before prctl took effect.
    if (getppid() != parent_pid) _exit(127);
    setpgid(0, 0);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull < 0 || dup2(devnull, 0) < 0) goto fail;
    if (dup2(request->output_fd, 1) < 0 || dup2(request->output_fd, 2) < 0) goto fail;
    // Keep the report pipe (close-on-exec) so exec failures reach the parent.
    if (dup2(report_fd, 3) < 0) goto fail;
    fcntl(3, F_SETFD, FD_CLOEXEC);
    close_descriptors_from(4);
    execve(request->path, request->argv, request->envp);
fail:
    err = errno;
    (void)!write(3, &err, sizeof err);
    _exit(127);
}

static void perform(struct spawn_request *request) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) {
        request->pid = -1;
        request->error = errno;
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(report[0]);
        exec_child(request, report[1]);
    }
    close(report[1]);
    if (pid < 0) {
        request->pid = -1;
        request->error = errno;
        close(report[0]);
        return;
    }
    // An exec that succeeded closes the pipe; one that failed writes its errno.
    int child_error = 0;
    ssize_t n;
    do { n = read(report[0], &child_error, sizeof child_error); } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == sizeof child_error) {
        int status;
        waitpid(pid, &status, 0);
        request->pid = -1;
        request->error = child_error;
    } else {
        request->pid = pid;
        request->error = 0;
    }
}

static void *spawner_main(void *unused) {
    (void)unused;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (pending == NULL) pthread_cond_wait(&changed, &lock);
        struct spawn_request *request = pending;
        pending = NULL;
        pthread_mutex_unlock(&lock);
        perform(request);
        pthread_mutex_lock(&lock);
        request->done = true;
        pthread_cond_broadcast(&changed);
    }
    return NULL;
}

static void start_spawner(void) {
    parent_pid = getpid();
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_create(&thread, &attributes, spawner_main, NULL);
    pthread_attr_destroy(&attributes);
}

pid_t bodhi_spawn(const char *path, char *const argv[], char *const envp[], int output_fd, int *error_out) {
    pthread_once(&started, start_spawner);
    struct spawn_request request = {path, argv, envp, output_fd, -1, 0, false};
    pthread_mutex_lock(&lock);
    while (pending != NULL) pthread_cond_wait(&changed, &lock);
    pending = &request;
    pthread_cond_broadcast(&changed);
    while (!request.done) pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
    if (request.pid < 0 && error_out) *error_out = request.error;
    return request.pid;
}
