using System.Formats.Tar;
using System.Text;
using Orchestrator.Images.Unpack;

namespace Orchestrator.Images.Tests;

/// <summary>
/// Seeded fuzzing of layer tars (headers, PAX records, sizes, names, link targets): every mutant
/// unpacks, or is refused as a hostile or malformed layer; a crash of another kind, a write
/// outside the root, or a hang is a bug, reported with its seed.
/// </summary>
public sealed class TarFuzzTests : IDisposable
{
    private readonly TempDir _dir = new("tar-fuzz");

    public void Dispose() => _dir.Dispose();

    private static byte[] Layer(TarEntryFormat format)
    {
        var tar = new MemoryStream();
        using (var w = new TarWriter(tar, format, leaveOpen: true))
        {
            w.WriteEntry(format == TarEntryFormat.Pax ? new PaxTarEntry(TarEntryType.Directory, "etc/") : new UstarTarEntry(TarEntryType.Directory, "etc/"));
            var file = format == TarEntryFormat.Pax
                ? (TarEntry)new PaxTarEntry(TarEntryType.RegularFile, "etc/motd", new Dictionary<string, string> { ["mtime"] = "1577934245.5", ["uname"] = "root" })
                : new UstarTarEntry(TarEntryType.RegularFile, "etc/motd");
            file.DataStream = new MemoryStream(Encoding.UTF8.GetBytes("hello"));
            w.WriteEntry(file);
            w.WriteEntry(format == TarEntryFormat.Pax ? new PaxTarEntry(TarEntryType.SymbolicLink, "etc/link") { LinkName = "motd" } : new UstarTarEntry(TarEntryType.SymbolicLink, "etc/link") { LinkName = "motd" });
            w.WriteEntry(format == TarEntryFormat.Pax ? new PaxTarEntry(TarEntryType.HardLink, "etc/hard") { LinkName = "etc/motd" } : new UstarTarEntry(TarEntryType.HardLink, "etc/hard") { LinkName = "etc/motd" });
            w.WriteEntry(format == TarEntryFormat.Pax ? new PaxTarEntry(TarEntryType.RegularFile, ".wh.gone") : new UstarTarEntry(TarEntryType.RegularFile, ".wh.gone"));
        }
        return tar.ToArray();
    }

    /// <summary>What a malformed layer may be refused with: our refusal, or the tar and gzip readers' "this is not valid".</summary>
    private static bool Refused(Exception e) => e is HostileLayerException or InvalidDataException or EndOfStreamException or FormatException;

    [Fact]
    public void Layer_tars() => Fuzz(Mutator.FirstSeed, Mutator.Iterations(2000));

    /// <summary>
    /// Every seed the fuzzer ever failed on: 1433, a symlink with an empty target; 524606, a NUL
    /// in a name; 531279, a PAX header whose size is past its data (the tar reader's own exception).
    /// </summary>
    [Theory]
    [InlineData(1433)]
    [InlineData(524606)]
    [InlineData(531279)]
    public void Seeds_that_once_failed(int seed) => Fuzz(seed, 1);

    private void Fuzz(int first, int count)
    {
        var outside = _dir.Combine("outside-marker");
        var n = 0;
        Mutator.Run("layer-tar", [Layer(TarEntryFormat.Pax), Layer(TarEntryFormat.Ustar)],
            ["ustar\0", "ustar  \0", "00000000000", "77777777777\0", "\u0080\0\0\0\0\0\0\0\0\0\0\u00ff", "../", "/", "path=", "size=", "linkpath=", "30 path=../../x\n", ".wh.", ".wh..wh..opq", "\0\0\0\0"],
            first, count, input =>
            {
                var root = _dir.Combine($"root-{n++}");
                try
                {
                    LayerUnpacker.UnpackToNewDirectoryAsync(new MemoryStream(input), root, new UnpackOptions { Whiteouts = WhiteoutMode.Apply, PreserveOwnership = false, MaxBytes = 1 << 20 })
                        .GetAwaiter().GetResult();
                }
                finally
                {
                    if (Directory.Exists(root))
                    {
                        Directory.Delete(root, recursive: true);
                    }
                }
                var strays = Directory.GetFileSystemEntries(_dir.Path).Where(p => !Path.GetFileName(p).StartsWith("root-", StringComparison.Ordinal)).ToList();
                Assert.True(strays.Count == 0, $"the layer wrote outside its root: {string.Join(", ", strays)}");
            }, Refused);
        Assert.False(File.Exists(outside));
    }
}
