/* meshport's kernel side: connect() capture, original-destination answers and the same-host socket shortcut. */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "meshport.h"

/* Plain uapi headers rather than a generated vmlinux.h: every field used here is in the stable uapi contexts, so
 * no CO-RE relocation is needed and the object builds without BTF on the build host. */

#define MESHPORT_AF_INET 2
#define MESHPORT_AF_INET6 10
#define MESHPORT_SOCK_STREAM 1
#define MESHPORT_SOL_IP 0
#define MESHPORT_SOL_IPV6 41
#define MESHPORT_SO_ORIGINAL_DST 80     /* linux/netfilter_ipv4.h */
#define MESHPORT_IP6T_SO_ORIGINAL_DST 80 /* linux/netfilter_ipv6/ip6_tables.h */
#define MESHPORT_TCP_CLOSE 7
#define MESHPORT_PAGE_SIZE 4096 /* the smallest page size: a reset above it is harmless where pages are larger */

/* Layout of struct sockaddr_in, which the sidecar's getsockopt(SO_ORIGINAL_DST) expects back. */
struct meshport_sockaddr_in {
	__u16 family;
	__be16 port;
	__be32 addr;
	__u8 zero[8];
};

/* Layout of struct sockaddr_in6, the answer to getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST). */
struct meshport_sockaddr_in6 {
	__u16 family;
	__be16 port;
	__be32 flowinfo;
	__be32 addr[4];
	__u32 scope_id;
};

const volatile struct meshport_config meshport_cfg = {
	.capture_ip4 = 0x0100007f, /* 127.0.0.1 in network byte order on a little-endian host; the loader sets it */
	.capture_port = 15001,
	.sidecar_uid = 1337,
	.capture_ip6 = {0, 0, 0, 0x01000000}, /* ::1 in network byte order on a little-endian host; the loader sets it */
};

/* Written by connect4, read (and cleared) by sockops when the connection is established. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct meshport_orig_dst);
} cookie_dst SEC(".maps");

/* Keyed as the sidecar's accepted socket sees the connection. Deleted when that socket closes (sockops STATE_CB) or
 * when an uncaptured connection from the cgroup takes the tuple; LRU only for entries whose accepted socket is out of
 * the cgroup's reach. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct meshport_tuple);
	__type(value, struct meshport_orig_dst);
} tuple_dst SEC(".maps");

/* The native IPv6 counterparts of cookie_dst and tuple_dst (connect6, sockops, getsockopt SOL_IPV6), same lifetimes. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct meshport_orig_dst6);
} cookie_dst6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct meshport_tuple6);
	__type(value, struct meshport_orig_dst6);
} tuple6_dst SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct meshport_tuple);
	__type(value, __u64);
} sock_by_tuple SEC(".maps");

/* Tests only (nothing in the loader writes it): a destination port whose sockets' first message is not redirected,
 * as if the peer were not in the SOCKHASH yet. 0: off. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} test_force_miss SEC(".maps");

/* Sockets (by their own tuple) whose message once took the TCP path: never redirected again, since redirected bytes
 * would be read before the ones still in the peer's TCP receive queue. Cleared when a new connection takes the tuple. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct meshport_tuple);
	__type(value, __u8);
} missed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MESHPORT_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct meshport_ctl);
} ctl SEC(".maps");

static __always_inline void stat_add(__u32 index, __u64 delta)
{
	__u64 *value = bpf_map_lookup_elem(&stats, &index);

	if (value)
		*value += delta; /* per-CPU slot: no atomic needed */
}

/* A bounded loop (kernel 5.3+) rather than unrolling: the count is a rodata constant the verifier sees. */
static __always_inline int port_in(const volatile __u16 *ports, __u16 count, __u16 port)
{
	for (int i = 0; i < MESHPORT_MAX_PORTS; i++) {
		if (i >= count)
			break;
		if (ports[i] == port)
			return 1;
	}
	return 0;
}

static __always_inline int port_captured(__u16 port)
{
	if (port_in(meshport_cfg.exclude_ports, meshport_cfg.exclude_count, port))
		return 0;
	if (meshport_cfg.include_count == 0)
		return 1;
	return port_in(meshport_cfg.include_ports, meshport_cfg.include_count, port);
}

/* Whether a connect to dst_port (to the capture address itself when to_capture_address) is to be captured: what
 * connect4 and connect6 (IPv4-mapped and native) share. The sidecar's own connects go where they say: rewriting them
 * would loop back into the sidecar; so does a connect to the capture port itself. */
static __always_inline int capture_wanted(int to_capture_address, __u16 dst_port)
{
	__u32 uid = (__u32)bpf_get_current_uid_gid();

	if (uid == meshport_cfg.sidecar_uid || (to_capture_address && dst_port == meshport_cfg.capture_port) ||
	    !port_captured(dst_port)) {
		stat_add(MESHPORT_STAT_SKIPPED_CONNECTS, 1);
		return 0;
	}
	return 1;
}

/* Whether a connect to dst_ip4:dst_port is to be captured, its original destination recorded by socket cookie when it
 * is: connect4 and the IPv4-mapped connect6. */
static __always_inline int capture_connect(struct bpf_sock_addr *ctx, __u32 dst_ip4, __u16 dst_port)
{
	struct meshport_orig_dst orig = {};
	__u64 cookie;

	if (!capture_wanted(dst_ip4 == meshport_cfg.capture_ip4, dst_port))
		return 0;
	cookie = bpf_get_socket_cookie(ctx);
	orig.ip4 = dst_ip4;
	orig.port = dst_port;
	if (bpf_map_update_elem(&cookie_dst, &cookie, &orig, BPF_ANY) != 0) {
		/* Without a record the sidecar could not learn where to go: leave this connect alone. */
		stat_add(MESHPORT_STAT_SKIPPED_CONNECTS, 1);
		return 0;
	}
	stat_add(MESHPORT_STAT_HOOKED_CONNECTS, 1);
	return 1;
}

/* Plain TCP only: MPTCP and SCTP streams are SOCK_STREAM too, but the capture listener speaks TCP; an MPTCP connect
 * reaches the hook on its first subflow, a TCP socket, and only its parent tells it apart. */
static __always_inline int plain_tcp(struct bpf_sock_addr *ctx)
{
	return ctx->type == MESHPORT_SOCK_STREAM && ctx->protocol == IPPROTO_TCP &&
	       !(ctx->sk && bpf_skc_to_mptcp_sock(ctx->sk));
}

SEC("cgroup/connect4")
int meshport_connect4(struct bpf_sock_addr *ctx)
{
	if (!plain_tcp(ctx) || !capture_connect(ctx, ctx->user_ip4, bpf_ntohs((__u16)ctx->user_port)))
		return 1;
	ctx->user_ip4 = meshport_cfg.capture_ip4;
	ctx->user_port = bpf_htons(meshport_cfg.capture_port);
	return 1;
}

/* Whether the pod's sidecar accepts native IPv6 capture: a TCP listener on [capture_ip6]:capture_port (a "::1" one or
 * a dual-stack "::" one) in the connecting socket's network namespace. Without one, a rewritten connect would be
 * refused, so it goes where it says instead (counted as skipped): a sidecar that listens on 127.0.0.1 only keeps
 * native IPv6 working as before it was captured, and `meshport hijack status` says IPv6 is not captured. */
static __always_inline int ipv6_capture_served(struct bpf_sock_addr *ctx)
{
	struct bpf_sock_tuple tuple = {};
	struct bpf_sock *listener;

	tuple.ipv6.daddr[0] = meshport_cfg.capture_ip6[0];
	tuple.ipv6.daddr[1] = meshport_cfg.capture_ip6[1];
	tuple.ipv6.daddr[2] = meshport_cfg.capture_ip6[2];
	tuple.ipv6.daddr[3] = meshport_cfg.capture_ip6[3];
	tuple.ipv6.dport = bpf_htons(meshport_cfg.capture_port);
	listener = bpf_sk_lookup_tcp(ctx, &tuple, sizeof(tuple.ipv6), BPF_F_CURRENT_NETNS, 0);
	if (!listener)
		return 0;
	bpf_sk_release(listener);
	return 1;
}

/* A native IPv6 connect: rewritten to [capture_ip6]:capture_port, its destination recorded in cookie_dst6; sockops
 * moves it to tuple6_dst and getsockopt answers SOL_IPV6 IP6T_SO_ORIGINAL_DST with a sockaddr_in6. */
static __always_inline int capture_connect6(struct bpf_sock_addr *ctx, __u16 dst_port)
{
	struct meshport_orig_dst6 orig = {};
	__u64 cookie;

	orig.ip6[0] = ctx->user_ip6[0];
	orig.ip6[1] = ctx->user_ip6[1];
	orig.ip6[2] = ctx->user_ip6[2];
	orig.ip6[3] = ctx->user_ip6[3];
	orig.port = dst_port;
	/* A link-local destination (fe80::/10) means nothing without its interface, which the record cannot carry (the
	 * hook sees no scope id): the sidecar could not reach it, so it goes where it says. */
	if ((bpf_ntohl(orig.ip6[0]) & 0xffc00000) == 0xfe800000) {
		stat_add(MESHPORT_STAT_SKIPPED_CONNECTS, 1);
		return 0;
	}
	if (!capture_wanted(orig.ip6[0] == meshport_cfg.capture_ip6[0] && orig.ip6[1] == meshport_cfg.capture_ip6[1] &&
				    orig.ip6[2] == meshport_cfg.capture_ip6[2] && orig.ip6[3] == meshport_cfg.capture_ip6[3],
			    dst_port))
		return 0;
	if (!ipv6_capture_served(ctx)) {
		stat_add(MESHPORT_STAT_SKIPPED_CONNECTS, 1);
		return 0;
	}
	cookie = bpf_get_socket_cookie(ctx);
	if (bpf_map_update_elem(&cookie_dst6, &cookie, &orig, BPF_ANY) != 0) {
		stat_add(MESHPORT_STAT_SKIPPED_CONNECTS, 1);
		return 0;
	}
	stat_add(MESHPORT_STAT_HOOKED_CONNECTS, 1);
	return 1;
}

/* connect() of an AF_INET6 socket. A dual-stack socket (a JVM's default) connecting to an IPv4 peer as
 * ::ffff:a.b.c.d is captured like connect4 would: rewritten to ::ffff:<capture address>, which the kernel connects
 * over IPv4, so the IPv4 capture listener accepts it and answers SO_ORIGINAL_DST as for any other IPv4 connection.
 * A native IPv6 destination goes to [capture_ip6]:capture_port (capture_connect6). */
SEC("cgroup/connect6")
int meshport_connect6(struct bpf_sock_addr *ctx)
{
	if (!plain_tcp(ctx))
		return 1;
	if (ctx->user_ip6[0] != 0 || ctx->user_ip6[1] != 0 || ctx->user_ip6[2] != bpf_htonl(0xffff)) {
		if (!capture_connect6(ctx, bpf_ntohs((__u16)ctx->user_port)))
			return 1;
		ctx->user_ip6[0] = meshport_cfg.capture_ip6[0];
		ctx->user_ip6[1] = meshport_cfg.capture_ip6[1];
		ctx->user_ip6[2] = meshport_cfg.capture_ip6[2];
		ctx->user_ip6[3] = meshport_cfg.capture_ip6[3];
		ctx->user_port = bpf_htons(meshport_cfg.capture_port);
		return 1;
	}
	if (!capture_connect(ctx, ctx->user_ip6[3], bpf_ntohs((__u16)ctx->user_port)))
		return 1;
	/* user_ip6 is written one 4-byte word at a time (the only store size the verifier allows for it). */
	ctx->user_ip6[0] = 0;
	ctx->user_ip6[1] = 0;
	ctx->user_ip6[2] = bpf_htonl(0xffff);
	ctx->user_ip6[3] = meshport_cfg.capture_ip4;
	ctx->user_port = bpf_htons(meshport_cfg.capture_port);
	return 1;
}

static __always_inline int is_loopback(__u32 ip4)
{
	return (bpf_ntohl(ip4) >> 24) == 127;
}

/* sockops for a native IPv6 connection: the tuple6_dst record of a captured one and its lifetime, as for IPv4 below.
 * No sk_msg shortcut. */
static __always_inline int sockops6(struct bpf_sock_ops *skops)
{
	struct meshport_tuple6 self = {};
	struct meshport_orig_dst6 *orig;
	__u64 cookie;

	self.netns = bpf_get_netns_cookie(skops);
	self.local_ip6[0] = skops->local_ip6[0];
	self.local_ip6[1] = skops->local_ip6[1];
	self.local_ip6[2] = skops->local_ip6[2];
	self.local_ip6[3] = skops->local_ip6[3];
	self.remote_ip6[0] = skops->remote_ip6[0];
	self.remote_ip6[1] = skops->remote_ip6[1];
	self.remote_ip6[2] = skops->remote_ip6[2];
	self.remote_ip6[3] = skops->remote_ip6[3];
	self.local_port = (__u16)skops->local_port;
	self.remote_port = (__u16)bpf_ntohl(skops->remote_port);

	if (skops->op == BPF_SOCK_OPS_STATE_CB) {
		if (skops->args[1] == MESHPORT_TCP_CLOSE)
			bpf_map_delete_elem(&tuple6_dst, &self);
		return 1;
	}
	if (skops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) {
		struct meshport_tuple6 accepted = {
			.netns = self.netns,
			.local_ip6 = {self.remote_ip6[0], self.remote_ip6[1], self.remote_ip6[2], self.remote_ip6[3]},
			.remote_ip6 = {self.local_ip6[0], self.local_ip6[1], self.local_ip6[2], self.local_ip6[3]},
			.local_port = self.remote_port,
			.remote_port = self.local_port,
		};

		cookie = bpf_get_socket_cookie(skops);
		orig = bpf_map_lookup_elem(&cookie_dst6, &cookie);
		if (orig) {
			struct meshport_orig_dst6 copy = *orig;

			if (bpf_map_update_elem(&tuple6_dst, &accepted, &copy, BPF_ANY) == 0)
				stat_add(MESHPORT_STAT_ORIG_DST_RECORDED, 1);
			bpf_map_delete_elem(&cookie_dst6, &cookie);
		} else {
			bpf_map_delete_elem(&tuple6_dst, &accepted);
		}
	} else if (bpf_map_lookup_elem(&tuple6_dst, &self)) {
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	}
	return 1;
}

SEC("sockops")
int meshport_sockops(struct bpf_sock_ops *skops)
{
	struct meshport_tuple self = {};
	struct meshport_orig_dst *orig;
	struct meshport_ctl *control;
	__u32 zero = 0;
	int mapped;
	__u64 cookie;

	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB &&
	    skops->op != BPF_SOCK_OPS_STATE_CB)
		return 1;
	/* IPv4, or a dual-stack IPv6 socket connected to an IPv4-mapped address (connect6): its IPv4 fields hold the
	 * connection. Native IPv6 has its own keys. */
	mapped = skops->family == MESHPORT_AF_INET6 && skops->remote_ip6[0] == 0 && skops->remote_ip6[1] == 0 &&
		 skops->remote_ip6[2] == bpf_htonl(0xffff);
	if (skops->family == MESHPORT_AF_INET6 && !mapped)
		return sockops6(skops);
	if (skops->family != MESHPORT_AF_INET && !mapped)
		return 1;

	self.netns = bpf_get_netns_cookie(skops);
	self.local_ip4 = skops->local_ip4;
	self.remote_ip4 = skops->remote_ip4;
	self.local_port = (__u16)skops->local_port;
	self.remote_port = (__u16)bpf_ntohl(skops->remote_port);

	if (skops->op == BPF_SOCK_OPS_STATE_CB) {
		/* args[1] is the new state. Only accepted sockets that hold an entry ask for this callback: their entry
		 * (keyed by their own tuple) lives exactly as long as they do. */
		if (skops->args[1] == MESHPORT_TCP_CLOSE)
			bpf_map_delete_elem(&tuple_dst, &self);
		return 1;
	}

	if (skops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) {
		/* The accepted socket on the capture listener sees this connection with the ends swapped. */
		struct meshport_tuple accepted = {
			.netns = self.netns,
			.local_ip4 = self.remote_ip4,
			.remote_ip4 = self.local_ip4,
			.local_port = self.remote_port,
			.remote_port = self.local_port,
		};

		cookie = bpf_get_socket_cookie(skops);
		orig = bpf_map_lookup_elem(&cookie_dst, &cookie);
		if (orig) {
			struct meshport_orig_dst copy = *orig;

			if (bpf_map_update_elem(&tuple_dst, &accepted, &copy, BPF_ANY) == 0)
				stat_add(MESHPORT_STAT_ORIG_DST_RECORDED, 1);
			bpf_map_delete_elem(&cookie_dst, &cookie);
		} else {
			/* Not captured: this connection owns the tuple now, and an older one's entry must not answer for it. */
			bpf_map_delete_elem(&tuple_dst, &accepted);
		}
	} else if (bpf_map_lookup_elem(&tuple_dst, &self)) {
		/* An accepted socket with a recorded destination: delete the entry when it closes (STATE_CB above). */
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	}

	control = bpf_map_lookup_elem(&ctl, &zero);
	if (!control || !control->sockmap_enabled || mapped)
		return 1; /* the sk_msg shortcut is for IPv4 sockets only */
	if (!is_loopback(self.local_ip4) || !is_loopback(self.remote_ip4))
		return 1;
	bpf_map_delete_elem(&missed, &self); /* a new connection on this tuple: an older socket's miss is not its own */
	if (bpf_sock_hash_update(skops, &sock_by_tuple, &self, BPF_ANY) == 0)
		stat_add(MESHPORT_STAT_SOCKMAP_ADDED, 1);
	else
		stat_add(MESHPORT_STAT_SOCKMAP_FAILED, 1); /* full (E2BIG) or refused: the socket takes the TCP path */
	return 1;
}

/* A getsockopt this program does not answer. The program sees at most a page of the caller's buffer; left as it is,
 * an optlen over a page makes kernels before 6.5 fail the call with EFAULT (iptables-legacy reading its tables, any
 * getsockopt with a big buffer). optlen 0 tells the kernel to keep its own answer untouched, as
 * Documentation/bpf/prog_cgroup_sockopt.rst says a program that does not handle the option must. */
static __always_inline int pass_through(struct bpf_sockopt *ctx)
{
	if (ctx->optlen > MESHPORT_PAGE_SIZE)
		*(volatile __s32 *)&ctx->optlen = 0;
	return 1;
}

/* getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST) on a native IPv6 socket: a sockaddr_in6 from tuple6_dst. */
static __always_inline int answer_original_dst6(struct bpf_sockopt *ctx, struct bpf_sock *sk)
{
	struct meshport_sockaddr_in6 *sin6;
	struct meshport_orig_dst6 *orig;
	struct meshport_tuple6 key = {};

	if (sk->family != MESHPORT_AF_INET6 ||
	    (sk->dst_ip6[0] == 0 && sk->dst_ip6[1] == 0 && sk->dst_ip6[2] == bpf_htonl(0xffff)))
		return pass_through(ctx); /* an IPv4-mapped connection asks SOL_IP (and is answered below) */
	key.netns = bpf_get_netns_cookie(ctx);
	key.local_ip6[0] = sk->src_ip6[0];
	key.local_ip6[1] = sk->src_ip6[1];
	key.local_ip6[2] = sk->src_ip6[2];
	key.local_ip6[3] = sk->src_ip6[3];
	key.remote_ip6[0] = sk->dst_ip6[0];
	key.remote_ip6[1] = sk->dst_ip6[1];
	key.remote_ip6[2] = sk->dst_ip6[2];
	key.remote_ip6[3] = sk->dst_ip6[3];
	key.local_port = (__u16)sk->src_port;
	key.remote_port = bpf_ntohs(sk->dst_port);
	orig = bpf_map_lookup_elem(&tuple6_dst, &key);
	if (!orig)
		return pass_through(ctx); /* not ours: the kernel's answer (ip6tables' conntrack, ENOENT, ENOPROTOOPT) stands */

	sin6 = ctx->optval;
	if ((void *)(sin6 + 1) > ctx->optval_end)
		return pass_through(ctx); /* shorter than a sockaddr_in6: the kernel's error stands */
	sin6->family = MESHPORT_AF_INET6;
	sin6->port = bpf_htons(orig->port);
	sin6->flowinfo = 0;
	sin6->addr[0] = orig->ip6[0];
	sin6->addr[1] = orig->ip6[1];
	sin6->addr[2] = orig->ip6[2];
	sin6->addr[3] = orig->ip6[3];
	sin6->scope_id = 0;
	*(volatile __s32 *)&ctx->optlen = sizeof(*sin6);
	*(volatile __s32 *)&ctx->retval = 0;
	stat_add(MESHPORT_STAT_ORIG_DST_ANSWERED, 1);
	return 1;
}

SEC("cgroup/getsockopt")
int meshport_getsockopt(struct bpf_sockopt *ctx)
{
	struct meshport_sockaddr_in *sin;
	struct meshport_orig_dst *orig;
	struct meshport_tuple key = {};
	struct bpf_sock *sk;

	if (!(ctx->level == MESHPORT_SOL_IP && ctx->optname == MESHPORT_SO_ORIGINAL_DST) &&
	    !(ctx->level == MESHPORT_SOL_IPV6 && ctx->optname == MESHPORT_IP6T_SO_ORIGINAL_DST))
		return pass_through(ctx);
	sk = ctx->sk;
	if (!sk)
		return pass_through(ctx);
	if (ctx->level == MESHPORT_SOL_IPV6)
		return answer_original_dst6(ctx, sk);
	/* An IPv4 socket, or an IPv4-mapped one accepted on a dual-stack ("::") listener: its IPv4 fields hold the
	 * connection, and it asks SOL_IP SO_ORIGINAL_DST like an IPv4 socket does. */
	if (sk->family != MESHPORT_AF_INET &&
	    (sk->family != MESHPORT_AF_INET6 || sk->dst_ip6[0] != 0 || sk->dst_ip6[1] != 0 ||
	     sk->dst_ip6[2] != bpf_htonl(0xffff)))
		return pass_through(ctx);

	key.netns = bpf_get_netns_cookie(ctx);
	key.local_ip4 = sk->src_ip4;
	key.remote_ip4 = sk->dst_ip4;
	key.local_port = (__u16)sk->src_port;
	key.remote_port = bpf_ntohs(sk->dst_port);
	orig = bpf_map_lookup_elem(&tuple_dst, &key);
	if (!orig)
		return pass_through(ctx); /* not ours: whatever the kernel answered (conntrack, or ENOENT) stands */

	sin = ctx->optval;
	if ((void *)(sin + 1) > ctx->optval_end)
		return pass_through(ctx); /* caller's buffer is shorter than a sockaddr_in: let the kernel's error through */
	sin->family = MESHPORT_AF_INET;
	sin->port = bpf_htons(orig->port);
	sin->addr = orig->ip4;
	__builtin_memset(sin->zero, 0, sizeof(sin->zero));
	/* Two separate 4-byte stores: clang would merge adjacent ones into one 8-byte store the verifier rejects. */
	*(volatile __s32 *)&ctx->optlen = sizeof(*sin);
	*(volatile __s32 *)&ctx->retval = 0;
	stat_add(MESHPORT_STAT_ORIG_DST_ANSWERED, 1);
	return 1;
}

SEC("sk_msg")
int meshport_sk_msg(struct sk_msg_md *msg)
{
	struct meshport_tuple self = {}, peer = {};
	__u32 *force_miss_port;
	__u32 size = msg->size;
	__u32 zero = 0;
	__u8 one = 1;

	if (msg->family != MESHPORT_AF_INET)
		return SK_PASS;
	self.netns = bpf_get_netns_cookie(msg);
	self.local_ip4 = msg->local_ip4;
	self.remote_ip4 = msg->remote_ip4;
	self.local_port = (__u16)msg->local_port;
	self.remote_port = (__u16)bpf_ntohl(msg->remote_port);
	peer.netns = self.netns;
	peer.local_ip4 = self.remote_ip4;
	peer.remote_ip4 = self.local_ip4;
	peer.local_port = self.remote_port;
	peer.remote_port = self.local_port;

	/* Once a message took the TCP path, every later one does too: the receiver reads redirected bytes before what
	 * waits in its TCP receive queue, so mixing the two paths would reorder the stream. */
	if (bpf_map_lookup_elem(&missed, &self))
		return SK_PASS;
	force_miss_port = bpf_map_lookup_elem(&test_force_miss, &zero);
	if ((force_miss_port && *force_miss_port != 0 && *force_miss_port == self.remote_port) ||
	    bpf_msg_redirect_hash(msg, &sock_by_tuple, &peer, BPF_F_INGRESS) != SK_PASS) {
		/* Peer not (yet) in the map, e.g. its passive-established callback has not run: the normal path, for good. */
		bpf_map_update_elem(&missed, &self, &one, BPF_ANY);
		stat_add(MESHPORT_STAT_REDIRECT_MISSES, 1);
		return SK_PASS;
	}
	stat_add(MESHPORT_STAT_REDIRECTED_MSGS, 1);
	stat_add(MESHPORT_STAT_REDIRECTED_BYTES, size);
	return SK_PASS;
}

/* GPL-compatible: the sockmap and cookie helpers are only offered to GPL-compatible programs on some kernels. */
char LICENSE[] SEC("license") = "Dual BSD/GPL";
