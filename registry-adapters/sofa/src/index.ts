// @meshport/registry-sofa: the sofa-rpc mesh HTTP API facade and the SOFA Registry session client.
export {};
