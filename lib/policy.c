/* SPDX-License-Identifier: MIT */
/*
 * Which policy a ring is made under: the options', else HUGERING_MODE from
 * the environment (auto when unset); an unknown value is an error, never a
 * silent change of behaviour.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int hr_ring_policy(const struct hugering_init_opts *o, int *policy)
{
	const char *e;

	if (o && o->policy != HUGERING_POLICY_ENV) {
		if (o->policy < HUGERING_POLICY_AUTO || o->policy > HUGERING_POLICY_KERNEL) {
			hr_set_error("unknown policy %d", o->policy);
			return -EINVAL;
		}
		*policy = o->policy;
		return 0;
	}
	e = getenv("HUGERING_MODE");
	if (!e || !*e || !strcmp(e, "auto"))
		*policy = HUGERING_POLICY_AUTO;
	else if (!strcmp(e, "nommap"))
		*policy = HUGERING_POLICY_NOMMAP;
	else if (!strcmp(e, "kernel"))
		*policy = HUGERING_POLICY_KERNEL;
	else {
		hr_set_error("HUGERING_MODE=%s: expected auto, nommap or kernel", e);
		return -EINVAL;
	}
	return 0;
}
