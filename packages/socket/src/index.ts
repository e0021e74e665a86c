// @meshport/socket: typed access to the native addon (build/Release/meshport_socket.node).
export {};
