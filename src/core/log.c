/*
 * log.c - the library's single way to say something: through the host's
 * log callback (hs_switch_config.log_fn), filtered by level. The library
 * never prints on its own. Any thread.
 */
#include <stdio.h>

#include "internal.h"

void hs__vlog(const hs_switch_t *sw, enum hs_log_level lvl, const char *prefix,
	      const char *fmt, va_list ap)
{
	if (!sw || !sw->cfg.log_fn ||
	    (int)lvl > atomic_load_explicit(&sw->log_level, memory_order_relaxed))
		return;
	char msg[512];
	int off = snprintf(msg, sizeof(msg), "%s: %s%s", sw->name,
			   prefix ? prefix : "", prefix ? ": " : "");
	if (off < 0)
		off = 0;
	if ((size_t)off < sizeof(msg))
		vsnprintf(msg + off, sizeof(msg) - (size_t)off, fmt, ap);
	sw->cfg.log_fn(sw->cfg.log_opaque, lvl, msg);
}

void hs__log(const hs_switch_t *sw, enum hs_log_level lvl, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	hs__vlog(sw, lvl, NULL, fmt, ap);
	va_end(ap);
}

void hs_port_log(const hs_port_t *port, enum hs_log_level level,
		 const char *fmt, ...)
{
	if (!port)
		return;
	va_list ap;
	va_start(ap, fmt);
	hs__vlog(port->sw, level, port->name, fmt, ap);
	va_end(ap);
}
