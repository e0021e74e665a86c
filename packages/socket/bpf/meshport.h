/* What the BPF side and the loader (native/bpf_loader.cc) must agree on: map value layouts and indices. */
#ifndef MESHPORT_BPF_H
#define MESHPORT_BPF_H

#define MESHPORT_MAX_PORTS 16

/* Fixed before load through .rodata; the loader finds it by name in the object's BTF. */
struct meshport_config {
	__u32 capture_ip4;   /* network byte order; 127.0.0.1 */
	__u16 capture_port;  /* host byte order */
	__u16 include_count; /* 0 means: every port not excluded */
	__u32 sidecar_uid;
	__u16 exclude_count;
	__u16 pad;
	__u16 include_ports[MESHPORT_MAX_PORTS];
	__u16 exclude_ports[MESHPORT_MAX_PORTS];
	__u32 capture_ip6[4]; /* network byte order; ::1. Where native IPv6 connects go (connect6) */
};

/* The original destination of a hooked connect. */
struct meshport_orig_dst {
	__u32 ip4;  /* network byte order */
	__u16 port; /* host byte order */
	__u16 pad;
};

/* The original destination of a hooked native IPv6 connect. */
struct meshport_orig_dst6 {
	__u32 ip6[4]; /* network byte order */
	__u16 port;   /* host byte order */
	__u16 pad;
};

/* A connection as one of its sockets sees it: "local" first. Addresses in network, ports in host byte order.
 * netns is the network namespace's cookie: identical loopback tuples in two namespaces under one cgroup are two
 * connections. pad is explicit so that no uninitialised byte is part of a key. */
struct meshport_tuple {
	__u64 netns;
	__u32 local_ip4;
	__u32 remote_ip4;
	__u16 local_port;
	__u16 remote_port;
	__u32 pad;
};

/* The same for a native IPv6 connection. Its own type (and maps) rather than a wider IPv4 one: the IPv4 keys, and
 * the maps pinned with them, keep their layout, so a re-apply of this build takes over an older build's IPv4 records. */
struct meshport_tuple6 {
	__u64 netns;
	__u32 local_ip6[4];
	__u32 remote_ip6[4];
	__u16 local_port;
	__u16 remote_port;
	__u32 pad;
};

/* Indices of the per-CPU counters in meshport_stats. */
enum meshport_stat {
	MESHPORT_STAT_HOOKED_CONNECTS = 0,
	MESHPORT_STAT_SKIPPED_CONNECTS,
	MESHPORT_STAT_ORIG_DST_RECORDED,
	MESHPORT_STAT_ORIG_DST_ANSWERED,
	MESHPORT_STAT_SOCKMAP_ADDED,
	MESHPORT_STAT_REDIRECTED_MSGS,
	MESHPORT_STAT_REDIRECTED_BYTES,
	MESHPORT_STAT_REDIRECT_MISSES,
	MESHPORT_STAT_SOCKMAP_FAILED, /* bpf_sock_hash_update failed, e.g. the SOCKHASH is full */
	MESHPORT_STAT_MAX,
};

/* Index 0 of meshport_ctl: runtime switches the loader flips at attach time. */
struct meshport_ctl {
	__u32 sockmap_enabled; /* sockops fills the SOCKHASH only while sk_msg is attached */
};

#endif
