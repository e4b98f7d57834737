/*
 * registry.c - backends by name. The only process-wide state of the
 * library; a mutex makes it safe from any thread. Each entry counts the
 * ports using it so a backend cannot be unregistered under them.
 * Built-in backends register here through hs_backend_register(), exactly
 * like a host's own backend.
 */
#include <errno.h>
#include <pthread.h>

#include "internal.h"
#include "../backends/backends.h"

#define HS__BACKENDS_MAX 32

static struct {
	const struct hs_backend_ops *ops;
	unsigned users;
} reg[HS__BACKENDS_MAX];
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t builtin_once = PTHREAD_ONCE_INIT;

static int find_locked(const char *name)
{
	for (int i = 0; i < HS__BACKENDS_MAX; i++)
		if (reg[i].ops && !strcmp(reg[i].ops->name, name))
			return i;
	return -1;
}

static int do_register(const struct hs_backend_ops *ops)
{
	if (!ops || !ops->name || !ops->name[0] || strlen(ops->name) > 31 ||
	    ops->abi != HS_BACKEND_ABI || !ops->open || !ops->close ||
	    !ops->recv_burst || !ops->recv_done || !ops->send_reserve ||
	    !ops->send_commit || !ops->notify)
		return -EINVAL;
	int rc = -ENOSPC;
	pthread_mutex_lock(&reg_lock);
	if (find_locked(ops->name) >= 0) {
		rc = -EEXIST;
		goto out;
	}
	for (int i = 0; i < HS__BACKENDS_MAX; i++)
		if (!reg[i].ops) {
			reg[i].ops = ops;
			reg[i].users = 0;
			rc = 0;
			break;
		}
out:
	pthread_mutex_unlock(&reg_lock);
	return rc;
}

static void register_builtins(void)
{
	do_register(&hs__mem_ops);
	do_register(&hs__vhost_user_ops);
	do_register(&hs__tap_ops);
	do_register(&hs__uplink_ops);
	do_register(&hs__vxlan_ops);
#ifdef HS_HAVE_XEN_NETIF
	do_register(&hs__xen_ops);
#endif
}

void hs__backends_builtin(void)
{
	pthread_once(&builtin_once, register_builtins);
}

int hs_backend_register(const struct hs_backend_ops *ops)
{
	hs__backends_builtin();
	return do_register(ops);
}

int hs_backend_unregister(const char *name)
{
	if (!name)
		return -EINVAL;
	int rc;
	pthread_mutex_lock(&reg_lock);
	int i = find_locked(name);
	if (i < 0)
		rc = -ENOENT;
	else if (reg[i].users)
		rc = -EBUSY;
	else {
		reg[i].ops = NULL;
		rc = 0;
	}
	pthread_mutex_unlock(&reg_lock);
	return rc;
}

const struct hs_backend_ops *hs__backend_get(const char *name)
{
	const struct hs_backend_ops *ops = NULL;
	hs__backends_builtin();
	pthread_mutex_lock(&reg_lock);
	int i = find_locked(name);
	if (i >= 0) {
		reg[i].users++;
		ops = reg[i].ops;
	}
	pthread_mutex_unlock(&reg_lock);
	return ops;
}

void hs__backend_put(const struct hs_backend_ops *ops)
{
	pthread_mutex_lock(&reg_lock);
	for (int i = 0; i < HS__BACKENDS_MAX; i++)
		if (reg[i].ops == ops && reg[i].users) {
			reg[i].users--;
			break;
		}
	pthread_mutex_unlock(&reg_lock);
}
