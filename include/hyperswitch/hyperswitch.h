/*
 * hyperswitch/hyperswitch.h - the umbrella header: include this one.
 *
 * hyperswitch is an embeddable software switch for virtual machines built
 * on the Hyper-Switch architecture: frames are copied once, from the
 * sender's memory straight into buffers the receiver posted; receivers are
 * notified according to whether they run or sleep; switching runs in the
 * sender's thread and moves to idle cores when there are some.
 */
#ifndef HYPERSWITCH_HYPERSWITCH_H
#define HYPERSWITCH_HYPERSWITCH_H

#include <hyperswitch/version.h>
#include <hyperswitch/types.h>
#include <hyperswitch/switch.h>
#include <hyperswitch/port.h>
#include <hyperswitch/fdb.h>
#include <hyperswitch/backend.h>
#include <hyperswitch/mem.h>
#include <hyperswitch/vhost_user.h>
#include <hyperswitch/tap.h>
#include <hyperswitch/uplink.h>
#include <hyperswitch/xen.h>
#include <hyperswitch/vxlan.h>

#endif /* HYPERSWITCH_HYPERSWITCH_H */
