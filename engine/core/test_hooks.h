/*
 * Seams for deterministic tests of races: weak no-ops in the library that
 * a test program replaces with strong definitions. Never called for
 * anything else.
 */
#ifndef LR_TEST_HOOKS_H
#define LR_TEST_HOOKS_H

#include "llmring.h"

/* In lr_submit, after the stopping check passed and before the push. */
void engine_submit_window_hook(lr_engine *e);

#endif
