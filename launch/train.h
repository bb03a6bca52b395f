/* train.h: the training engine behind `dtrain`: one process, one backend. */
#ifndef DT_TRAIN_H
#define DT_TRAIN_H

#include "../runtime/config.h"

/* Trains per cfg. Returns the process exit code: 0 done, 2 bad input (after
 * printing one message), 130/143 stopped by SIGINT/SIGTERM after saving. */
int dt_train(const dt_config *cfg);

/* `dtrain --print-layout`: builds the rank grid and the backends, prints which
 * rank is where (host, node-local rank, device, coordinates), returns 0. */
int dt_print_layout(const dt_config *cfg);

#endif
