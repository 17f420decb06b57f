import BodhiCore
import BodhiStore
import Logging

extension Settings {
    /// The database `BODHI_DATABASE_URL` names, opened and migrated; a failure ends the
    /// command with its message.
    func openStore(logger: Logger = Logger(label: "bodhi.store")) async throws -> Store {
        let store: Store
        do {
            store = try await Store.open(database, logger: logger)
        } catch let error as BodhiError {
            throw ValidationFailure(message: error.message)
        }
        do {
            try await store.migrate()
        } catch let error as BodhiError {
            await store.close()
            throw ValidationFailure(message: error.message)
        }
        return store
    }

    /// Runs `body` with the database open, and closes it after; Bodhi's errors end the command
    /// with their message.
    func withStore<T>(logger: Logger = Logger(label: "bodhi.store"), _ body: (Store) async throws -> T) async throws -> T {
        let store = try await openStore(logger: logger)
        do {
            let result = try await body(store)
            await store.close()
            return result
        } catch {
            await store.close()
            if let error = error as? BodhiError { throw ValidationFailure(message: error.message) }
            throw error
        }
    }
}
