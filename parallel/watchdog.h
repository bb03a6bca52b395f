/* watchdog.h: no rank waits forever. Blocking communication is bracketed by
 * dt_watchdog_enter/leave; a thread checks once a second, and a rank that
 * has waited longer than the timeout (DTRAIN_COMM_TIMEOUT_S, default 600 s)
 * prints which operation hung and exits, which makes mpirun/srun take the
 * whole job down. */
#ifndef DT_WATCHDOG_H
#define DT_WATCHDOG_H

/* Starts the watchdog thread (once per process; later calls do nothing). */
void dt_watchdog_start(void);
/* The calling thread starts / stops waiting on the group in `what`. */
void dt_watchdog_enter(const char *what);
void dt_watchdog_leave(void);
/* The timeout in seconds in force. */
double dt_watchdog_timeout(void);

#endif
