#ifndef CBODHISPAWN_H
#define CBODHISPAWN_H

#include <sys/types.h>

/// Starts `path` with `argv`/`envp` (NULL-terminated) as a child that dies with Bodhi.
///
/// The child gets PR_SET_PDEATHSIG(SIGKILL), so it is killed even when Bodhi itself is
/// killed with SIGKILL. Linux delivers that signal when the *thread* that forked exits, so
/// every fork happens on one dedicated thread that lives as long as the process.
/// stdin is /dev/null; stdout and stderr go to `output_fd`; all other descriptors are closed.
/// The child runs in its own process group so a terminal's Ctrl-C reaches only Bodhi, which
/// then stops its children in order.
/// Returns the child's pid, or -1 with `*error_out` set to an errno value.
pid_t bodhi_spawn(const char *path, char *const argv[], char *const envp[], int output_fd, int *error_out);

#endif
