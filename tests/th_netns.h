/*
 * th_netns.h - a network namespace of the calling thread's own, its
 * loopback up (fuzz targets and benchmarks that talk over 127.0.0.x and
 * make taps without touching the host's). No Check: any program may use
 * it.
 */
#ifndef HS_TH_NETNS_H
#define HS_TH_NETNS_H

#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* 0, or -errno (unshare needs CAP_SYS_ADMIN: root). */
static inline int th_netns_own(void)
{
	if (unshare(CLONE_NEWNET))
		return -errno;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	int rc = 0;
	if (ioctl(fd, SIOCGIFFLAGS, &ifr))
		rc = -errno;
	ifr.ifr_flags |= IFF_UP;
	if (!rc && ioctl(fd, SIOCSIFFLAGS, &ifr))
		rc = -errno;
	close(fd);
	return rc;
}

#endif
