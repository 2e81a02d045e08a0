import com.google.gson.Gson;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.protobuf.Any;
import com.google.protobuf.ByteString;
import com.google.rpc.ErrorInfo;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyFactory;
import java.security.MessageDigest;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.SecureRandom;
import java.security.spec.MGF1ParameterSpec;
import java.security.spec.PKCS8EncodedKeySpec;
import java.security.spec.X509EncodedKeySpec;
import java.time.Duration;
import java.util.Arrays;
import java.util.Base64;
import java.util.HashMap;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import javax.crypto.Cipher;
import javax.crypto.spec.OAEPParameterSpec;
import javax.crypto.spec.PSource;
import recovery.v1.ErrorReasonOuterClass.ErrorReason;
import recovery.v1.RecoveryServiceGrpc;
import recovery.v1.RecoveryServiceOuterClass.AssignKeyRequest;
import recovery.v1.RecoveryServiceOuterClass.AssignKeyResponse;
import recovery.v1.RecoveryServiceOuterClass.Backup;
import recovery.v1.RecoveryServiceOuterClass.BackupMetadata;
import recovery.v1.RecoveryServiceOuterClass.GetKeyRequest;
import recovery.v1.RecoveryServiceOuterClass.KeyEnvironment;
import recovery.v1.RecoveryServiceOuterClass.ListBackupsRequest;
import recovery.v1.RecoveryServiceOuterClass.Organisation;
import recovery.v1.RecoveryServiceOuterClass.Package;
import recovery.v1.RecoveryServiceOuterClass.RecoveryKey;
import recovery.v1.RecoveryServiceOuterClass.SealedPayload;
import recovery.v1.RecoveryServiceOuterClass.SecureDataRequest;
import recovery.v1.RecoveryServiceOuterClass.SecureFileHeader;
import recovery.v1.RecoveryServiceOuterClass.SecureFileRequest;
import recovery.v1.RecoveryServiceOuterClass.SecureFileResponse;

/**
 * Client is a Java caller of RecoveryService written the way a Java team would: grpc-java with
 * stubs generated from proto/ by protoc and the grpc-java plugin, sealing with the JDK's own
 * javax.crypto. Everything comes from Debian (libgrpc-java, libprotobuf-java, netty, guava, gson).
 * `make interop` (interop/run.sh, through interop/java/run.sh) runs it against a real recoveryd in
 * front of a real sandboxd and reads its last line, "N passed, N failed".
 *
 * <p>Environment: RECOVERY_ADDR, SANDBOX_URL, VECTORS_FILE, SERVICE_CONFIG_FILE, SCRATCH_DIR, as
 * for the Node and Python clients.
 */
public final class Client {
  /** The largest plaintext one RSA-4096 OAEP-SHA256 block holds. */
  private static final int MAX_PLAINTEXT = 446;
  /** Every call gets a deadline: a caller that waits forever hangs whenever anything does. */
  private static final long UNARY_DEADLINE_S = 30;
  private static final long FILE_DEADLINE_S = 300;
  /** A few MiB, not a multiple of the chunk size. */
  private static final int FILE_BYTES = 3 * 1024 * 1024 + 77;
  private static final int CHUNK_BYTES = 256 * 1024;

  /**
   * What a Java caller should write: name the MGF1 hash. NOTE: the JDK's
   * "RSA/ECB/OAEPWithSHA-256AndMGF1Padding" alone uses MGF1-SHA1, the classic mistake.
   */
  private static final OAEPParameterSpec OAEP_SHA256 =
      new OAEPParameterSpec("SHA-256", "MGF1", MGF1ParameterSpec.SHA256, PSource.PSpecified.DEFAULT);

  private static final HexFormat HEX = HexFormat.of();
  private static final SecureRandom RANDOM = new SecureRandom();

  private final String sandboxURL;
  private final Path scratchDir;
  private final JsonObject vectors;
  private final RecoveryServiceGrpc.RecoveryServiceBlockingStub blocking;
  private final RecoveryServiceGrpc.RecoveryServiceStub async;
  private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
  private final String run = System.currentTimeMillis() + "-" + HEX.formatHex(randomBytes(4));
  private int passed;
  private int failed;

  // State the scenario builds up step by step.
  private RecoveryKey key;
  private final List<String> backups = new java.util.ArrayList<>();
  private int listed;

  private Client(ManagedChannel channel, String sandboxURL, Path scratchDir, JsonObject vectors) {
    this.sandboxURL = sandboxURL;
    this.scratchDir = scratchDir;
    this.vectors = vectors;
    this.blocking = RecoveryServiceGrpc.newBlockingStub(channel);
    this.async = RecoveryServiceGrpc.newStub(channel);
  }

  private interface Check {
    void run() throws Exception;
  }

  private void check(String name, Check c) {
    try {
      c.run();
      passed++;
      System.out.println("ok - " + name);
    } catch (Exception | AssertionError e) {
      failed++;
      System.out.println("not ok - " + name + ": " + e);
    }
  }

  private static void require(boolean cond, String msg) {
    if (!cond) {
      throw new AssertionError(msg);
    }
  }

  private static String env(String name) {
    String v = System.getenv(name);
    if (v == null || v.isEmpty()) {
      System.err.println("Client: " + name + " is not set (run it through make interop)");
      System.exit(2);
    }
    return v;
  }

  private static byte[] randomBytes(int n) {
    byte[] b = new byte[n];
    RANDOM.nextBytes(b);
    return b;
  }

  private static String sha256(byte[] b) throws Exception {
    return HEX.formatHex(MessageDigest.getInstance("SHA-256").digest(b));
  }

  /** pemFromHex converts the upstream's hex SPKI with the JDK's KeyFactory, not by hand. */
  private static String pemFromHex(String hex) throws Exception {
    PublicKey pub = KeyFactory.getInstance("RSA").generatePublic(new X509EncodedKeySpec(HEX.parseHex(hex)));
    String body = Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII)).encodeToString(pub.getEncoded());
    return "-----BEGIN PUBLIC KEY-----\n" + body + "\n-----END PUBLIC KEY-----\n";
  }

  private static PublicKey publicKey(String hex) throws Exception {
    return KeyFactory.getInstance("RSA").generatePublic(new X509EncodedKeySpec(HEX.parseHex(hex)));
  }

  private static PrivateKey privateKey(String pem) throws Exception {
    String body = pem.replaceAll("-----[A-Z ]+-----", "").replaceAll("\\s", "");
    return KeyFactory.getInstance("RSA").generatePrivate(new PKCS8EncodedKeySpec(Base64.getDecoder().decode(body)));
  }

  private static byte[] seal(PublicKey pub, byte[] plaintext) throws Exception {
    Cipher c = Cipher.getInstance("RSA/ECB/OAEPPadding");
    c.init(Cipher.ENCRYPT_MODE, pub, OAEP_SHA256);
    return c.doFinal(plaintext);
  }

  /** sealTheClassicWay is the mistake, made on purpose: the JDK default MGF1 hash is SHA-1. */
  private static byte[] sealTheClassicWay(PublicKey pub, byte[] plaintext) throws Exception {
    Cipher c = Cipher.getInstance("RSA/ECB/OAEPWithSHA-256AndMGF1Padding");
    c.init(Cipher.ENCRYPT_MODE, pub);
    return c.doFinal(plaintext);
  }

  private static byte[] open(PrivateKey priv, byte[] ciphertext) throws Exception {
    Cipher c = Cipher.getInstance("RSA/ECB/OAEPPadding");
    c.init(Cipher.DECRYPT_MODE, priv, OAEP_SHA256);
    return c.doFinal(ciphertext);
  }

  private RecoveryServiceGrpc.RecoveryServiceBlockingStub unary() {
    return blocking.withDeadlineAfter(UNARY_DEADLINE_S, TimeUnit.SECONDS);
  }

  /** errorReason returns ErrorInfo.reason from the status details, or null. */
  private static String errorReason(StatusRuntimeException e) throws Exception {
    com.google.rpc.Status status = StatusProto.fromThrowable(e);
    if (status == null) {
      return null;
    }
    for (Any detail : status.getDetailsList()) {
      if (detail.is(ErrorInfo.class)) {
        return detail.unpack(ErrorInfo.class).getReason();
      }
    }
    return null;
  }

  private interface Call {
    void run() throws Exception;
  }

  private static void expectRefusal(Call call, Status.Code code, String reason) throws Exception {
    try {
      call.run();
    } catch (StatusRuntimeException e) {
      String got = errorReason(e);
      require(e.getStatus().getCode() == code && reason.equals(got),
          "refused with " + e.getStatus().getCode() + " " + got + ", want " + code + " " + reason);
      ErrorReason.valueOf("ERROR_REASON_" + got); // throws if not in the proto's enum
      return;
    }
    throw new AssertionError("succeeded, want " + code + " " + reason);
  }

  private byte[] sandbox(String method, String path) throws Exception {
    HttpRequest req = HttpRequest.newBuilder(URI.create(sandboxURL + path))
        .method(method, HttpRequest.BodyPublishers.noBody())
        .timeout(Duration.ofSeconds(UNARY_DEADLINE_S))
        .build();
    HttpResponse<byte[]> res = http.send(req, HttpResponse.BodyHandlers.ofByteArray());
    require(res.statusCode() == 200, "sandbox " + method + " " + path + ": HTTP " + res.statusCode());
    return res.body();
  }

  private byte[] recovered(String backupId) throws Exception {
    JsonObject body = new Gson().fromJson(
        new String(sandbox("POST", "/sandbox/v1/backups/" + backupId + "/recover"), StandardCharsets.UTF_8), JsonObject.class);
    return Base64.getDecoder().decode(body.get("plaintext").getAsString());
  }

  private int sandboxBackupsFor(String keyId) throws Exception {
    JsonObject body = new Gson().fromJson(
        new String(sandbox("GET", "/sandbox/v1/backups"), StandardCharsets.UTF_8), JsonObject.class);
    int n = 0;
    for (JsonElement b : body.getAsJsonArray("backups")) {
      if (b.getAsJsonObject().get("key_id").getAsString().equals(keyId)) {
        n++;
      }
    }
    return n;
  }

  private AssignKeyRequest assignRequest() {
    return AssignKeyRequest.newBuilder()
        .setUserIdentifier("user-" + run)
        .setKeyEnvironment(KeyEnvironment.KEY_ENVIRONMENT_HOT)
        .setOrganisation(Organisation.newBuilder().setCustomerId("interop-java-" + run).setCustomerName("Interop Java"))
        .setPackage(Package.newBuilder().setPackageId("interop-pkg").setPackageName("Interop package"))
        .build();
  }

  private void scenario() {
    check("vectors: hex → PEM and fingerprint with java.security", () -> {
      for (JsonElement e : vectors.getAsJsonArray("keys")) {
        JsonObject k = e.getAsJsonObject();
        String hex = k.get("public_key_hex").getAsString();
        require(pemFromHex(hex).equals(k.get("public_key_pem").getAsString()), k.get("name") + ": PEM differs");
        require(sha256(HEX.parseHex(hex)).equals(k.get("fingerprint_sha256").getAsString()), "fingerprint differs");
      }
      for (JsonElement e : vectors.getAsJsonArray("checksums")) {
        JsonObject c = e.getAsJsonObject();
        require(sha256(HEX.parseHex(c.get("plaintext_hex").getAsString())).equals(c.get("checksum_sha256").getAsString()),
            "checksum differs");
      }
    });

    check("vectors: OAEP-SHA256/MGF1-SHA256 opens the valid blocks, not the MGF1-SHA1 mistake", () -> {
      Map<String, PrivateKey> privs = new HashMap<>();
      for (JsonElement e : vectors.getAsJsonArray("keys")) {
        JsonObject k = e.getAsJsonObject();
        privs.put(k.get("name").getAsString(), privateKey(k.get("private_key_pem").getAsString()));
      }
      for (JsonElement e : vectors.getAsJsonArray("ciphertexts")) {
        JsonObject c = e.getAsJsonObject();
        PrivateKey priv = privs.get(c.get("key").getAsString());
        byte[] ct = HEX.parseHex(c.get("ciphertext_hex").getAsString());
        byte[] got;
        try {
          got = open(priv, ct);
        } catch (javax.crypto.BadPaddingException ex) {
          got = null;
        }
        String want = c.get("plaintext_hex").getAsString();
        if (c.get("valid").getAsBoolean()) {
          require(got != null && HEX.formatHex(got).equals(want), "a valid block did not open");
        } else {
          require(got == null, "the mistake opened with MGF1-SHA256");
          // The JDK's default OAEPWithSHA-256AndMGF1Padding opens it: it IS the classic mistake.
          Cipher classic = Cipher.getInstance("RSA/ECB/OAEPWithSHA-256AndMGF1Padding");
          classic.init(Cipher.DECRYPT_MODE, priv);
          require(HEX.formatHex(classic.doFinal(ct)).equals(want), "the JDK default did not open the mistake");
        }
      }
    });

    check("AssignKey: the PEM is the hex converted by java.security, the fingerprint its SHA-256", () -> {
      AssignKeyResponse res = unary().assignKey(assignRequest());
      require(!res.getAlreadyAssigned(), "a new customer came back already_assigned");
      key = res.getKey();
      require(key.getPublicKeyPem().equals(pemFromHex(key.getPublicKeyHex())), "public_key_pem is not the hex converted");
      require(key.getFingerprintSha256().equals(sha256(HEX.parseHex(key.getPublicKeyHex()))), "fingerprint differs");
    });

    check("AssignKey again: the recorded key, already_assigned", () -> {
      AssignKeyResponse res = unary().assignKey(assignRequest());
      require(res.getAlreadyAssigned() && res.getKey().getKeyId().equals(key.getKeyId()), "not the recorded key");
    });

    check("SecureData plaintext: recovered exactly; a retry with its idempotency_key stores nothing new", () -> {
      byte[] plaintext = ("java plaintext seed phrase " + run).getBytes(StandardCharsets.UTF_8);
      SecureDataRequest request = SecureDataRequest.newBuilder()
          .setKeyId(key.getKeyId())
          .setPlaintext(ByteString.copyFrom(plaintext))
          .setMetadata(BackupMetadata.newBuilder().setDescription("interop java plaintext").setContentType("text/plain"))
          .setIdempotencyKey("java-plain-" + run)
          .build();
      Backup b = unary().secureData(request).getBackup();
      require(b.getChecksumSha256().equals(sha256(plaintext)), "checksum is not SHA-256 of the plaintext");
      require(Arrays.equals(recovered(b.getBackupId()), plaintext), "the sandbox recovered other bytes");
      require(unary().secureData(request).getBackup().getBackupId().equals(b.getBackupId()),
          "a retry with the same idempotency_key stored another backup");
      backups.add(b.getBackupId());
    });

    check("SecureData sealed by javax.crypto OAEP-SHA256/MGF1-SHA256: recovered exactly", () -> {
      byte[] plaintext = randomBytes(MAX_PLAINTEXT);
      Backup b = unary().secureData(SecureDataRequest.newBuilder()
          .setPublicKeyHex(key.getPublicKeyHex())
          .setSealed(SealedPayload.newBuilder()
              .setCiphertext(ByteString.copyFrom(seal(publicKey(key.getPublicKeyHex()), plaintext)))
              .setChecksumSha256(sha256(plaintext)))
          .setIdempotencyKey("java-sealed-" + run)
          .build()).getBackup();
      require(b.getKeyId().equals(key.getKeyId()), "stored under another key");
      require(Arrays.equals(recovered(b.getBackupId()), plaintext), "the sandbox recovered other bytes");
      backups.add(b.getBackupId());
    });

    check("SecureFile: " + FILE_BYTES + " bytes streamed in " + CHUNK_BYTES + "-byte chunks, held byte for byte", () -> {
      Path file = scratchDir.resolve("java-file.bin");
      Files.write(file, randomBytes(FILE_BYTES));
      byte[] all = Files.readAllBytes(file);
      String digest = sha256(all);
      SecureFileRequest header = SecureFileRequest.newBuilder().setHeader(SecureFileHeader.newBuilder()
          .setKeyId(key.getKeyId())
          .setMetadata(BackupMetadata.newBuilder().setOriginalFilename("java-file.bin").setContentType("application/octet-stream"))
          .setSizeBytes(FILE_BYTES)
          .setSha256(digest)
          .setIdempotencyKey("java-file-" + run)).build();
      CompletableFuture<Backup> done = new CompletableFuture<>();
      Backup b;
      try (InputStream in = Files.newInputStream(file)) {
        async.withDeadlineAfter(FILE_DEADLINE_S, TimeUnit.SECONDS).secureFile(new ClientResponseObserver<SecureFileRequest, SecureFileResponse>() {
          private ClientCallStreamObserver<SecureFileRequest> out;
          private boolean headerSent;
          private boolean finished;

          @Override
          public void beforeStart(ClientCallStreamObserver<SecureFileRequest> requestStream) {
            out = requestStream;
            // Flow control: send only while the transport is ready, so the
            // file is read as it is sent rather than queued in memory whole.
            requestStream.setOnReadyHandler(this::sendWhileReady);
          }

          private void sendWhileReady() {
            try {
              while (!finished && out.isReady()) {
                if (!headerSent) {
                  out.onNext(header);
                  headerSent = true;
                  continue;
                }
                byte[] chunk = in.readNBytes(CHUNK_BYTES);
                if (chunk.length == 0) {
                  finished = true;
                  out.onCompleted();
                } else {
                  out.onNext(SecureFileRequest.newBuilder().setChunk(ByteString.copyFrom(chunk)).build());
                }
              }
            } catch (java.io.IOException e) {
              finished = true;
              out.onError(e);
            }
          }

          @Override
          public void onNext(SecureFileResponse r) {
            done.complete(r.getBackup());
          }

          @Override
          public void onError(Throwable t) {
            done.completeExceptionally(t);
          }

          @Override
          public void onCompleted() {
            done.completeExceptionally(new AssertionError("stream completed without a response"));
          }
        });
        b = done.get(FILE_DEADLINE_S, TimeUnit.SECONDS);
      }
      require(b.getChecksumSha256().equals(digest) && b.getSizeBytes() == FILE_BYTES, "checksum or size differs");
      require(Arrays.equals(sandbox("GET", "/sandbox/v1/backups/" + b.getBackupId() + "/content"), all),
          "the sandbox holds other bytes");
      backups.add(b.getBackupId());
    });

    check("ListBackups shows the three backups; GetKey returns the key", () -> {
      List<Backup> list = unary().listBackups(ListBackupsRequest.newBuilder().setKeyId(key.getKeyId()).build()).getBackupsList();
      Set<String> ids = new HashSet<>();
      list.forEach(b -> ids.add(b.getBackupId()));
      require(backups.size() == 3 && ids.containsAll(backups), "not every backup is listed");
      listed = list.size();
      RecoveryKey got = unary().getKey(GetKeyRequest.newBuilder().setKeyId(key.getKeyId()).build()).getKey();
      require(got.getPublicKeyPem().equals(key.getPublicKeyPem())
          && got.getFingerprintSha256().equals(key.getFingerprintSha256()), "GetKey differs");
    });

    check("447-byte plaintext: INVALID_ARGUMENT, PLAINTEXT_TOO_LARGE", () -> expectRefusal(
        () -> unary().secureData(SecureDataRequest.newBuilder().setKeyId(key.getKeyId())
            .setPlaintext(ByteString.copyFrom(new byte[MAX_PLAINTEXT + 1])).build()),
        Status.Code.INVALID_ARGUMENT, "PLAINTEXT_TOO_LARGE"));

    check("unknown key: NOT_FOUND, KEY_NOT_FOUND", () -> expectRefusal(
        () -> unary().secureData(SecureDataRequest.newBuilder().setKeyId(UUID.randomUUID().toString())
            .setPlaintext(ByteString.copyFromUtf8("x")).build()),
        Status.Code.NOT_FOUND, "KEY_NOT_FOUND"));

    check("the JDK-default MGF1-SHA1 mistake: INVALID_ARGUMENT, UPSTREAM_REJECTED_REQUEST, nothing stored", () -> {
      int before = sandboxBackupsFor(key.getKeyId());
      byte[] plaintext = ("mistaken " + run).getBytes(StandardCharsets.UTF_8);
      expectRefusal(() -> unary().secureData(SecureDataRequest.newBuilder()
              .setKeyId(key.getKeyId())
              .setSealed(SealedPayload.newBuilder()
                  .setCiphertext(ByteString.copyFrom(sealTheClassicWay(publicKey(key.getPublicKeyHex()), plaintext)))
                  .setChecksumSha256(sha256(plaintext)))
              .setIdempotencyKey("java-mistake-" + run)
              .build()),
          Status.Code.INVALID_ARGUMENT, "UPSTREAM_REJECTED_REQUEST");
      int now = unary().listBackups(ListBackupsRequest.newBuilder().setKeyId(key.getKeyId()).build()).getBackupsCount();
      require(now == listed, "ListBackups went from " + listed + " to " + now);
      require(sandboxBackupsFor(key.getKeyId()) == before, "the sandbox stored something");
    });
  }

  public static void main(String[] args) throws Exception {
    JsonObject vectors = new Gson().fromJson(Files.readString(Path.of(env("VECTORS_FILE"))), JsonObject.class);
    @SuppressWarnings("unchecked")
    Map<String, ?> serviceConfig = new Gson().fromJson(Files.readString(Path.of(env("SERVICE_CONFIG_FILE"))), Map.class);
    ManagedChannel channel = ManagedChannelBuilder.forTarget(env("RECOVERY_ADDR"))
        .usePlaintext()
        .defaultServiceConfig(serviceConfig)
        .enableRetry()
        .build();
    Client client = new Client(channel, env("SANDBOX_URL"), Path.of(env("SCRATCH_DIR")), vectors);
    try {
      client.scenario();
    } finally {
      channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
    }
    System.out.println(client.passed + " passed, " + client.failed + " failed");
    System.exit(client.failed == 0 ? 0 : 1);
  }
}
