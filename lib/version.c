/* SPDX-License-Identifier: MIT */
/*
 * The version of the library loaded at run time.  A program built against
 * a newer header may run on an older shared library: these let it ask.
 */
#include "hugering.h"

int hugering_major_version(void)
{
	return HUGERING_VERSION_MAJOR;
}

int hugering_minor_version(void)
{
	return HUGERING_VERSION_MINOR;
}

bool hugering_check_version(int major, int minor)
{
	return major > HUGERING_VERSION_MAJOR ||
	       (major == HUGERING_VERSION_MAJOR && minor > HUGERING_VERSION_MINOR);
}
