import NIOCore
import NIOPosix

// Bodhi shares the machine with its engines, whose compute threads stall whenever another thread
// takes their core. Few event loops (one on up to 7 cores) keep Bodhi's work on few threads;
// one loop proxies thousands of requests a second.
NIOSingletons.groupLoopCountSuggestion = max(1, System.coreCount / 8 + 1)

// Swift concurrency runs on NIO's event loops, so that a request's tasks and its I/O share
// threads: a streamed token no longer hops between the cooperative pool and an event loop.
// On small machines those hops take CPU from the engine (see docs/PERFORMANCE.md).
// Must run first, on the main thread, before any task is started; hence no `@main`.
NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
await Bodhi.runAsMain()
