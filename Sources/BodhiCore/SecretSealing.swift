/// Seals secrets Bodhi keeps for others (a backend's API key) so that the database holds only
/// ciphertext; `SecretBox` is the one in use.
public protocol SecretSealing: Sendable {
    func seal(_ plaintext: String) throws -> String
    func open(_ sealed: String) throws -> String
}
