/*
 * error.c - error strings, drop-reason names and the run-time version.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

const char *hs_strerror(int err)
{
	if (err == 0)
		return "success";
	if (err > 0)
		return "not an error code (positive)";
	/* strerror() names every errno the library returns; the returned
	 * string of glibc is static for known codes. */
	return strerror(-err);
}

static const char *const drop_names[HS_DROP__COUNT] = {
	[HS_DROP_RUNT] = "runt",
	[HS_DROP_OVERSIZE] = "oversize",
	[HS_DROP_BAD_SRC_MAC] = "bad_src_mac",
	[HS_DROP_VLAN] = "vlan",
	[HS_DROP_SAME_PORT] = "same_port",
	[HS_DROP_NO_BUFFER] = "rx_no_buffer",
	[HS_DROP_BAD_OFFLOAD] = "bad_offload",
	[HS_DROP_PORT_DOWN] = "port_down",
	[HS_DROP_BAD_DESC] = "bad_descriptor",
	[HS_DROP_COPY_ERROR] = "copy_error",
	[HS_DROP_NO_ROUTE] = "no_route",
	[HS_DROP_MIRROR_PORT] = "mirror_port",
};

const char *hs_drop_reason_name(enum hs_drop_reason r)
{
	if ((unsigned)r >= HS_DROP__COUNT)
		return "unknown";
	return drop_names[r];
}

unsigned hs_version(void)
{
	return HS_VERSION_HEX;
}

const char *hs_version_string(void)
{
	return HS_VERSION_STRING;
}

int hs_config_copy(void *out, size_t out_size, const void *in, size_t size, size_t min_size)
{
	if (!out || !in || size < min_size)
		return -EINVAL;
	const unsigned char *b = in;
	for (size_t i = out_size; i < size; i++)
		if (b[i])
			return -E2BIG; /* a field this library does not know */
	memset(out, 0, out_size);
	memcpy(out, in, size < out_size ? size : out_size);
	return 0;
}
