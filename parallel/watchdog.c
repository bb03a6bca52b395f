/* watchdog.c: a timer thread over blocking collectives. */
#include "watchdog.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../runtime/dt.h"

static _Atomic double g_since = 0;        /* 0 = not waiting */
static const char *_Atomic g_what = NULL;
static double g_timeout = 600;
static int g_started = 0;

double dt_watchdog_timeout(void) { return g_timeout; }

static void *watch(void *arg) {
  (void)arg;
  for (;;) {
    sleep(1);
    double since = atomic_load(&g_since);
    if (since > 0 && dt_now() - since > g_timeout) {
      const char *what = atomic_load(&g_what);
      fprintf(stderr,
              "[rank %d] timeout: waited %.0f s in %s for the other ranks (one may have died "
              "or hung; DTRAIN_COMM_TIMEOUT_S sets the limit); taking the job down\n",
              dt_rank() < 0 ? 0 : dt_rank(), dt_now() - since, what ? what : "communication");
      fflush(stderr);
      fflush(stdout);
      /* exiting (not MPI_Abort from a second thread) is what the launcher
       * notices reliably: mpirun and srun then end every other rank */
      _exit(1);
    }
  }
  return NULL;
}

void dt_watchdog_start(void) {
  if (g_started) return;
  g_started = 1;
  const char *s = getenv("DTRAIN_COMM_TIMEOUT_S");
  if (s && atof(s) > 0) g_timeout = atof(s);
  pthread_t t;
  if (pthread_create(&t, NULL, watch, NULL) == 0) pthread_detach(t);
}

void dt_watchdog_enter(const char *what) {
  atomic_store(&g_what, what);
  atomic_store(&g_since, dt_now());
}

void dt_watchdog_leave(void) { atomic_store(&g_since, 0.0); }
