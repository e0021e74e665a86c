// @meshport/hijack: iptables/nft rules, BPF attachments and network namespaces for transparent capture.
export {};
