/* check.h: the C tests' one assertion. CHECK(cond, fmt, ...) prints
 * "ok   <message>" or "FAIL <message>" on its own line and counts it; a
 * test's main ends with `return check_summary();`. */
#ifndef DT_TESTS_CHECK_H
#define DT_TESTS_CHECK_H

#include <stdio.h>

static int g_pass, g_fail;

#define CHECK(cond, ...)                             \
  do {                                               \
    if (cond) g_pass++, printf("ok   " __VA_ARGS__); \
    else g_fail++, printf("FAIL " __VA_ARGS__);      \
    printf("\n");                                    \
    fflush(stdout);                                  \
  } while (0)

/* "N passed, M failed", and the exit status: 1 when anything failed */
static inline int check_summary(void) {
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}

#endif
