import ArgumentParser
import BodhiBackends
import AsyncHTTPClient
import BodhiChats
import BodhiCore
import BodhiEngine
import BodhiHub
import BodhiIdentity
import BodhiModels
import BodhiServer
import BodhiStore
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// `bodhi serve`: the composition root. Everything long-lived is built here and nowhere else.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Start the Bodhi server.")

    @OptionGroup var server: ServerOptions

    /// What a stop allows beyond `BODHI_SHUTDOWN_GRACE` before it cancels what still runs: time for
    /// the streams it cut to send their last event.
    static let drainMargin: Duration = .seconds(3)

    func run() async throws {
        let settings = try server.settings()
        do { try settings.validateEngine() } catch let error as BodhiError {
            throw ValidationFailure(message: error.message)
        }
        let level = ProcessInfo.processInfo.environment["BODHI_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        let formatText = ProcessInfo.processInfo.environment["BODHI_LOG_FORMAT"].flatMap { $0.isEmpty ? nil : $0 } ?? "text"
        guard let format = BodhiLogHandler.Format(rawValue: formatText) else {
            throw ValidationFailure(message: "Invalid value '\(formatText)' for BODHI_LOG_FORMAT (from environment): expected text or json.")
        }
        LoggingSystem.bootstrap({ label, provider in
            BodhiLogHandler(label: label, logLevel: level, format: format, metadataProvider: provider)
        }, metadataProvider: RequestScope.metadataProvider)
        let logger = Logger(label: "bodhi")
        try FileManager.default.createDirectory(atPath: settings.logsDirectory, withIntermediateDirectories: true)

        // For the engines' health checks and metrics (inference goes through EngineClient):
        // idle connections closed before llama-server's own 5 s keep-alive timeout closes them.
        var httpConfiguration = HTTPClient.Configuration()
        httpConfiguration.connectionPool = .init(idleTimeout: .seconds(3), concurrentHTTP1ConnectionsPerHostSoftLimit: 256)
        httpConfiguration.timeout = .init(connect: .seconds(5))
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: httpConfiguration)

        // The key for secrets at rest: checked (or generated, 0600) at start, so a bad
        // BODHI_ENCRYPTION_KEY stops Bodhi here rather than at the first secret it stores.
        let secrets: SecretBox
        do { secrets = try SecretBox.load(environment: ProcessInfo.processInfo.environment, home: settings.home) } catch let error as BodhiError {
            try? await http.shutdown()
            throw ValidationFailure(message: error.message)
        }
        let store: Store
        do { store = try await settings.openStore(logger: logger) } catch {
            try? await http.shutdown()
            throw error
        }
        let hubHTTP = HubClient.makeHTTPClient()

        let backendHTTP = BackendRegistry.makeHTTPClient()
        let assembly: BodhiAssembly
        do {
            assembly = try await BodhiAssembly.assemble(
                settings: settings, store: store, databasePing: { try await store.ping() }, secrets: secrets, engineHTTP: http,
                backendHTTP: backendHTTP, hubHTTP: hubHTTP, logger: logger, flags: server.flags,
                environment: ProcessInfo.processInfo.environment)
        } catch {
            await store.close()
            for client in [hubHTTP, backendHTTP, http] { try? await client.shutdown() }
            throw ValidationFailure(message: "Could not read the aliases, routers and backends from \(settings.database): \(error)")
        }
        let (services, supervisor, backends, pulls, engines, streams) = (
            assembly.services, assembly.supervisor, assembly.backends, assembly.pulls, assembly.engines, assembly.streams)
        let identity = services.identity
        backends.startSyncing()
        await pulls.resumeUnfinished()
        let application = BodhiHTTPServer.application(
            services: services, host: settings.host, port: settings.port, logger: logger,
            onServerRunning: { port in
                print("Bodhi is listening on http://\(settings.host):\(port) (models from \(settings.hubDirectory))")
                print("Open http://\(settings.host):\(port)/ui in a browser to chat and manage Bodhi.")
                if (try? await identity.isSetUp()) == false {
                    print("""
                        Bodhi is not set up yet: every API but /ping answers 401 until the first admin exists. Create one
                        in the browser at http://\(settings.host):\(port)/ui, or with
                          bodhi setup --admin-user admin --admin-password-stdin
                        then an API token for your clients with
                          bodhi tokens create --user admin --name my-app --scope power_user
                        """)
                }
                fflush(nil)
            })
        // Services stop in reverse order: the listener first (letting requests in flight finish),
        // then the engines. A stream can run for minutes, so the drain is bounded: streams still
        // running after BODHI_SHUTDOWN_GRACE end with an error event, and whatever runs past the
        // margin after that is cancelled.
        var listeners: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: application)]
        if let ollamaPort = settings.ollamaPort {
            // The same API (Ollama's, OpenAI's, Bodhi's) and the same access rules on Ollama's
            // address, for tools that hard-code it.
            listeners.append(.init(service: BodhiHTTPServer.application(
                services: services, host: settings.host, port: ollamaPort, logger: logger,
                onServerRunning: { port in
                    print("Ollama-compatible listener on http://\(settings.host):\(port)")
                    fflush(nil)
                })))
        }
        var groupConfiguration = ServiceGroupConfiguration(
            services: [.init(service: EngineSupervisorService(supervisor: supervisor))] + listeners
                + [.init(service: StreamDrainService(streams: streams, grace: settings.shutdownGrace, logger: logger))],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = settings.shutdownGrace + Self.drainMargin
        let group = ServiceGroup(configuration: groupConfiguration)
        var failure: (any Error)?
        do { try await group.run() } catch { failure = error }
        await pulls.shutdown()
        backends.stop()
        await supervisor.shutdown()
        engines.shutdown()
        await store.close()
        try? await hubHTTP.shutdown()
        try? await backendHTTP.shutdown()
        try? await http.shutdown()
        if let failure {
            throw ValidationFailure(message: "Bodhi could not serve on \(settings.host):\(settings.port): \(failure)")
        }
    }
}

/// Runs the supervisor's idle unloading until shutdown, then stops every engine.
struct EngineSupervisorService: Service {
    let supervisor: EngineSupervisor

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await supervisor.run()
        }
    }
}

/// Last in the group, so the first to hear of a stop: lets streams run on for the grace period,
/// then ends those still running with an error event that says why.
struct StreamDrainService: Service {
    let streams: StreamCutoff
    let grace: Duration
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        let (streams, grace, logger) = (streams, grace, logger)
        // Returns at once, so that the listeners stop taking requests now; the cut comes later.
        Task {
            try? await Task.sleep(for: grace)
            let running = streams.count
            if running > 0 { logger.info("ending streams still running at the end of the grace period", metadata: ["streams": "\(running)"]) }
            streams.cutAll(BodhiError.engineUnavailable(
                "Bodhi is stopping: this reply was cut short after the shutdown grace period (BODHI_SHUTDOWN_GRACE, \(KeepAlive.idle(grace))). Retry the request.",
                retryAfterSeconds: 5))
        }
    }
}
