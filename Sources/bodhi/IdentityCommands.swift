import ArgumentParser
import AsyncHTTPClient
import BodhiCore
import BodhiIdentity
import BodhiStore
import Foundation
import NIOCore

/// `bodhi setup`: creates the first admin, through the running server or in the database.
struct Setup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create the first admin (refused once one exists).")

    @OptionGroup var server: ServerOptions

    @Option(name: .customLong("admin-user"), help: "The admin's username.")
    var adminUser: String

    @Flag(name: .customLong("admin-password-stdin"), help: "Read the password from the first line of standard input.")
    var passwordFromStdin = false

    func run() async throws {
        guard passwordFromStdin else {
            throw ValidationFailure(message: "Pass the password on standard input with --admin-password-stdin, e.g. `echo \"$PASSWORD\" | bodhi setup --admin-user admin --admin-password-stdin`.")
        }
        guard let password = readLine(strippingNewline: true), !password.isEmpty else {
            throw ValidationFailure(message: "No password on standard input.")
        }
        let settings = try server.settings()
        let client = BodhiClient(settings: settings)
        if await client.isRunning() {
            let body = try JSONSerialization.data(withJSONObject: ["username": adminUser, "password": password])
            do {
                _ = try await client.call(.POST, settings.clientBaseURL + "/bodhi/v1/setup", body: body, decoding: UserProfile.self)
            } catch let error as ClientHTTPError {
                throw ValidationFailure(message: error.message)
            }
        } else {
            _ = try await settings.withStore { store in
                try await IdentityService(repository: store).setup(username: adminUser, password: password)
            }
        }
        print("admin \(adminUser) created. Next: bodhi tokens create --user \(adminUser) --name my-app --scope power_user")
    }
}

/// `bodhi tokens ...`: API tokens, managed by whoever can reach the database (the operator).
struct TokensCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokens", abstract: "Create, list and revoke API tokens.",
        subcommands: [Create.self, List.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a token; it is printed once and never again.")
        @OptionGroup var server: ServerOptions
        @Option(help: "The user the token acts for.") var user: String
        @Option(help: "A label, e.g. the app that uses it.") var name: String
        @Option(help: "user or power_user (never above the user's role).") var scope: String = "user"
        @Option(help: "Comma-separated models (or aliases) the token may use; all when absent.") var models: String?
        @Option(help: "Lifetime such as 30d or 12h; no expiry when absent.") var expires: String?

        func run() async throws {
            let settings = try server.settings()
            let expiresIn = try expires.map { text -> TimeInterval in
                guard let duration = Duration(parsing: text), duration > .zero else {
                    throw ValidationFailure(message: "--expires takes a duration such as 30d, 12h or 90m.")
                }
                return Double(duration.components.seconds)
            }
            let modelList = models.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
            let created = try await settings.withStore { store in
                try await IdentityService(repository: store).createToken(
                    forUser: user, name: name, scope: try Role(parsing: scope), models: modelList, expiresIn: expiresIn)
            }
            print(created.token)
            FileHandle.standardError.write(Data("token \(created.summary.id) for \(user) (\(created.summary.scope.rawValue)). Store it now: it is not shown again.\n".utf8))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "A user's tokens (never the secrets).")
        @OptionGroup var server: ServerOptions
        @Option(help: "Whose tokens.") var user: String

        func run() async throws {
            let settings = try server.settings()
            let tokens = try await settings.withStore { store in
                guard let owner = try await store.user(named: user) else { throw BodhiError.notFound("There is no user '\(user)'.") }
                return try await IdentityService(repository: store).tokens(userID: owner.id)
            }
            var rows = [["ID", "NAME", "PREFIX", "SCOPE", "MODELS", "EXPIRES", "LAST USED", "STATE"]]
            let format = ISO8601DateFormatter()
            for token in tokens {
                rows.append([
                    token.id, token.name, token.prefix, token.scope.rawValue, token.models?.joined(separator: ",") ?? "all",
                    token.expiresAt.map(format.string) ?? "never", token.lastUsedAt.map(format.string) ?? "never",
                    token.revokedAt != nil ? "revoked" : (token.expiresAt.map { $0 < Date() } ?? false) ? "expired" : "active",
                ])
            }
            printTable(rows)
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token at once.")
        @OptionGroup var server: ServerOptions
        @Option(help: "Whose token.") var user: String
        @Argument(help: "The token's id (from `bodhi tokens ls`).") var id: String

        func run() async throws {
            let settings = try server.settings()
            _ = try await settings.withStore { store in
                guard let owner = try await store.user(named: user) else { throw BodhiError.notFound("There is no user '\(user)'.") }
                return try await IdentityService(repository: store).revokeToken(id, userID: owner.id)
            }
            print("revoked \(id)")
        }
    }
}
