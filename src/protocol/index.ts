export * from './packet.ts';
export * from './codec.ts';
export * from './protocol-error.ts';
export * from './grpc-frame.ts';
