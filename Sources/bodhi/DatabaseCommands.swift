import ArgumentParser
import BodhiCore
import BodhiStore
import Logging

/// `bodhi db ...`: the database behind an installation.
struct DatabaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db", abstract: "Manage Bodhi's database.", subcommands: [MigrateTo.self])

    struct MigrateTo: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "migrate-to",
            abstract: "Copy this installation's database (BODHI_DATABASE_URL) into an empty PostgreSQL database.",
            discussion: "Stop Bodhi first. Every table is copied in one transaction and its row count verified; a target that holds data is refused. Afterwards, set BODHI_DATABASE_URL to the target.")

        @OptionGroup var server: ServerOptions

        @Argument(help: "The target, e.g. postgres://bodhi:secret@db.example:5432/bodhi.")
        var url: String

        func run() async throws {
            let settings = try server.settings()
            guard let target = DatabaseURL(url, relativeTo: settings.home) else {
                throw ValidationFailure(message: "'\(DatabaseURL.redacted(url))' is not a database URL: expected postgres://user:password@host:port/database or sqlite:PATH.")
            }
            guard target != settings.database else {
                throw ValidationFailure(message: "The target is the database this installation already uses (\(settings.database)).")
            }
            if await BodhiClient(settings: settings).isRunning() {
                throw ValidationFailure(message: "Bodhi is running at \(settings.clientBaseURL); stop it first, so that nothing changes while the data is copied.")
            }
            var logger = Logger(label: "bodhi.store")
            logger.logLevel = .error
            let counts = try await settings.withStore(logger: logger) { source in
                let destination: Store
                do { destination = try await Store.open(target, logger: logger) } catch let error as BodhiError {
                    throw ValidationFailure(message: error.message)
                }
                do {
                    let counts = try await source.copy(into: destination)
                    await destination.close()
                    return counts
                } catch {
                    await destination.close()
                    throw error
                }
            }
            print("copied \(settings.database) → \(target)")
            printTable([["TABLE", "ROWS"]] + counts.map { [$0.table, String($0.rows)] })
            print("Row counts match. To use it: BODHI_DATABASE_URL='\(target)' bodhi serve")
        }
    }
}
