<#
.SYNOPSIS
Enrol this Windows host in a cis490-train fleet: a venv, torch for this host's CUDA driver (or the
CPU build), the package with the matching xgboost extra (gpu or cpu, never both), the capability
self-test, and one Scheduled Task per GPU (or one "cpu" task) that starts the worker at boot.

.DESCRIPTION
Celery's prefork pool does not run on Windows: every worker uses the threads pool with one slot
(celery -A cis490_train worker -P threads -c 1). The tasks run as LOCAL SERVICE. Re-running the
script is safe: it updates the venv and the tasks and keeps worker.env (it never overwrites it).
Stopping a task ends the worker without a signal: its running job is requeued by the fleet's
reaper once its heartbeat goes stale (about 15 s).

The broker URL's password and the store token never go on the command line, where every user can
read them: each comes from a file holding it on one line (-BrokerUrlFile, -TokenFile) or from the
caller's $env:CIS490_BROKER_URL / $env:CIS490_WORKER_TOKEN. -Token, and a -BrokerUrl with a
password, are refused.

.EXAMPLE
.\deploy\install-worker-windows.ps1 -BrokerUrlFile C:\secrets\broker-url.txt `
    -StoreUrl http://coordinator:8490 -TokenFile C:\secrets\token.txt -DataDir D:\cis490\data

.EXAMPLE
.\deploy\install-worker-windows.ps1 -DryRun      # print every command and file, change nothing
#>
[CmdletBinding()]
param(
    [string]$BrokerUrl = "",
    [string]$BrokerUrlFile = "",
    [string]$StoreUrl = "",
    [string]$TokenFile = "",
    # Refused with a hint: a token on the command line is visible to every user.
    [string]$Token = "",
    [string]$DataDir = "$env:ProgramData\cis490\data",
    [string]$Queues = "",
    [string]$Source = (Split-Path -Parent $PSScriptRoot),
    [string]$InstallDir = "$env:ProgramData\cis490",
    [string]$Python = "python",
    [string]$TorchIndex = "",
    [switch]$DryRun
)

Set-StrictMode -Version Latest
$ErrorActionPreference = "Stop"

$TorchVersion = "2.13.0"
$TorchIndexBase = "https://download.pytorch.org/whl"
# The CUDA builds pytorch.org publishes for $TorchVersion, oldest first (128 = CUDA 12.8).
$TorchCudaBuilds = @(126, 128, 130)
$TierPattern = '^(cpu|cuda|cuda-[1-9][0-9]{0,4}g)$'
$TaskPath = "\cis490\"
$LocalService = "NT AUTHORITY\LOCAL SERVICE"
$Venv = Join-Path $InstallDir "venv"
$EnvFile = Join-Path $InstallDir "worker.env"
$Runner = Join-Path $InstallDir "run-worker.ps1"

function Fail([string]$Message, [int]$Code = 2) {
    Write-Host "error: $Message" -ForegroundColor Red
    exit $Code
}

function Step([string]$Message) {
    Write-Host "==> $Message"
}

# Run a native command, or only print it with -DryRun; a non-zero exit stops the script.
function Invoke-Native([string]$Exe, [string[]]$Arguments) {
    if ($DryRun) {
        Write-Host "+ $Exe $($Arguments -join ' ')"
        return
    }
    & $Exe @Arguments
    if ($LASTEXITCODE -ne 0) { Fail "'$Exe $($Arguments -join ' ')' exited with $LASTEXITCODE" 1 }
}

function Write-Setting([string]$Path, [string]$Content, [string]$Shown = $Content) {
    if ((Test-Path $Path) -and ((Get-Content -Raw $Path) -ceq $Content)) { return }
    if ($DryRun) {
        Write-Host "--- would write ${Path}:"
        Write-Host $Shown
        return
    }
    New-Item -ItemType Directory -Force -Path (Split-Path -Parent $Path) | Out-Null
    $tmp = "$Path.tmp"
    Set-Content -Path $tmp -Value $Content -Encoding UTF8 -NoNewline
    Move-Item -Force $tmp $Path
    Write-Host "wrote $Path"
}

# The one line of a secret's file (blank lines and surrounding spaces ignored).
function Read-ValueFile([string]$Option, [string]$Path) {
    if (-not (Test-Path -LiteralPath $Path -PathType Leaf)) { Fail "$Option ${Path}: not a readable file" }
    $lines = @(Get-Content -LiteralPath $Path | ForEach-Object { $_.Trim() } | Where-Object { $_ })
    if ($lines.Count -eq 0) { Fail "$Option ${Path}: the file is empty; put the value on one line" }
    if ($lines.Count -gt 1) { Fail "$Option ${Path}: the file holds more than one line; put the value alone on one line" }
    return $lines[0]
}

# $BrokerUrl and $Token from their files, else from the caller's environment; $BrokerFrom and
# $TokenFrom name where each came from, for messages that must not show the value.
function Read-Secrets {
    if ($Token) { Fail "-Token puts the token on the command line, which every user can read: put it on one line of a file and give -TokenFile FILE, or set `$env:CIS490_WORKER_TOKEN" }
    if ($BrokerUrl -match '^[A-Za-z0-9+.-]+://[^/@]*:[^/@]*@' -or $BrokerUrl -match '[?&]password=') {
        Fail "-BrokerUrl carries a password, which every user can read: put the URL on one line of a file and give -BrokerUrlFile FILE, or set `$env:CIS490_BROKER_URL"
    }
    $script:BrokerFrom = if ($BrokerUrl) { "-BrokerUrl" } else { "" }
    $script:TokenFrom = ""
    if ($BrokerUrlFile) {
        if ($BrokerUrl) { Fail "give -BrokerUrl or -BrokerUrlFile, not both" }
        $script:BrokerUrl = Read-ValueFile "-BrokerUrlFile" $BrokerUrlFile
        $script:BrokerFrom = "-BrokerUrlFile $BrokerUrlFile"
    } elseif (-not $BrokerUrl -and $env:CIS490_BROKER_URL) {
        $script:BrokerUrl = $env:CIS490_BROKER_URL
        $script:BrokerFrom = "CIS490_BROKER_URL"
    }
    if ($TokenFile) {
        $script:Token = Read-ValueFile "-TokenFile" $TokenFile
        $script:TokenFrom = "-TokenFile $TokenFile"
    } elseif ($env:CIS490_WORKER_TOKEN) {
        $script:Token = $env:CIS490_WORKER_TOKEN
        $script:TokenFrom = "CIS490_WORKER_TOKEN"
    }
}

function Assert-Input {
    # $IsWindows exists only in PowerShell 7; Windows PowerShell 5.1 runs on Windows alone.
    if ($PSVersionTable.PSEdition -eq "Core" -and -not $IsWindows -and -not $DryRun) {
        Fail "this installer is for Windows hosts; on Linux use deploy/install-worker.sh"
    }
    if (-not $DryRun) {
        $admin = ([Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()).IsInRole(
            [Security.Principal.WindowsBuiltInRole]::Administrator)
        if (-not $admin) { Fail "run it from an elevated PowerShell (Run as administrator), or see what it would do with -DryRun" }
    }
    if ($BrokerUrl -and $BrokerUrl -notmatch '^(redis|rediss)://') {
        # Only a -BrokerUrl value is shown: the others may hold a password.
        $shown = if ($BrokerFrom -eq "-BrokerUrl") { "-BrokerUrl $BrokerUrl" } else { $BrokerFrom }
        Fail "${shown}: only redis:// or rediss:// URLs are supported"
    }
    if ($StoreUrl -and $StoreUrl -notmatch '^https?://\S+$') { Fail "-StoreUrl ${StoreUrl}: give an http:// or https:// URL" }
    foreach ($value in @($BrokerUrl, $StoreUrl, $Token)) {
        if ($value -match '[\s"''`]') { Fail "the broker URL, the store URL and the token may not hold spaces or quotes" }
    }
    if ($Queues) {
        foreach ($tier in $Queues.Split(",")) {
            if ($tier -notmatch $TierPattern) { Fail "-Queues: '$tier' is not a tier; valid tiers: cpu, cuda, cuda-<N>g (e.g. cuda-8g)" }
        }
    }
    if (-not (Get-Command $Python -ErrorAction SilentlyContinue)) { Fail "$Python not found; install Python 3.11 or newer, or name one with -Python" }
    & $Python -c "import sys; sys.exit(sys.version_info < (3, 11))"
    if ($LASTEXITCODE -ne 0) { Fail "$Python is older than 3.11; cis490-train needs Python 3.11 or newer" }
}

# GPU indexes (as nvidia-smi numbers them) and the driver's CUDA version; none on a CPU host.
function Get-Gpus {
    $smi = Get-Command nvidia-smi -ErrorAction SilentlyContinue
    if (-not $smi) { return @{ Indexes = @(); Cuda = "" } }
    # Windows PowerShell turns redirected stderr into errors, so a failing nvidia-smi may throw.
    try { $listing = & $smi.Source "--query-gpu=index,name,memory.total,memory.free" "--format=csv,noheader,nounits" 2>$null }
    catch { $listing = $null }
    if ($LASTEXITCODE -ne 0 -or -not $listing) {
        Write-Warning "nvidia-smi is installed but failed (is the driver loaded?); installing as a CPU host"
        return @{ Indexes = @(); Cuda = "" }
    }
    $indexes = @($listing | ForEach-Object { ($_ -split ",")[0].Trim() } | Where-Object { $_ -match '^\d+$' })
    $cuda = ""
    if ((& $smi.Source | Out-String) -match 'CUDA Version:\s*(\d+)\.(\d+)') { $cuda = "$($Matches[1]).$($Matches[2])" }
    return @{ Indexes = $indexes; Cuda = $cuda }
}

# torch's pip requirement and index: the newest CUDA build this driver runs, or the CPU build.
function Select-Torch($Gpus) {
    if ($Gpus.Indexes.Count -eq 0) {
        $url = if ($TorchIndex) { $TorchIndex } else { "$TorchIndexBase/cpu" }
        return @{ Spec = "torch==$TorchVersion+cpu"; Url = $url; Extra = "cpu" }
    }
    if ($TorchIndex) {
        # Pin the build the index names (.../whl/cu126 -> +cu126): a bare version is met by any installed build.
        $label = ($TorchIndex.TrimEnd("/") -split "/")[-1]
        $spec = if ($label -match '^(cpu|cu\d+)$') { "torch==$TorchVersion+$label" } else { "torch==$TorchVersion" }
        return @{ Spec = $spec; Url = $TorchIndex; Extra = "gpu" }
    }
    if (-not $Gpus.Cuda) { Fail "nvidia-smi shows GPUs but no 'CUDA Version'; name the torch build with -TorchIndex $TorchIndexBase/cuXYZ" }
    $driver = [version]$Gpus.Cuda
    $chosen = $null
    foreach ($build in $TorchCudaBuilds) {
        if ([version]"$([math]::Floor($build / 10)).$($build % 10)" -le $driver) { $chosen = $build }
    }
    if (-not $chosen) { Fail "the NVIDIA driver supports CUDA $($Gpus.Cuda); torch $TorchVersion needs a newer one: update the driver, or name a build with -TorchIndex" }
    return @{ Spec = "torch==$TorchVersion+cu$chosen"; Url = "$TorchIndexBase/cu$chosen"; Extra = "gpu" }
}

# -Source with the xgboost extra: C:\src\cis490-train[gpu], cis490-train[gpu]==0.1.0, or cis490-train[gpu] @ URL.
function Get-PackageSpec([string]$Extra) {
    if ((Test-Path $Source) -or $Source -match '\.(whl|zip|tar\.gz)$') { return "$Source[$Extra]" }
    if ($Source -match '://') { return "cis490-train[$Extra] @ $Source" }
    if ($Source -match '^([A-Za-z0-9._-]+)([^\[]*)$') { return "$($Matches[1])[$Extra]$($Matches[2])" }
    Fail "-Source ${Source}: give a directory, a wheel, a requirement like cis490-train==0.1.0 or a URL, without extras"
}

function Install-Venv($Torch) {
    Step "Python environment $Venv ($($Torch.Spec) from $($Torch.Url), extra [$($Torch.Extra)])"
    $py = Join-Path $Venv "Scripts\python.exe"
    if (-not (Test-Path $py)) { Invoke-Native $Python @("-m", "venv", $Venv) }
    Invoke-Native $py @("-m", "pip", "install", "--upgrade", "pip")
    Invoke-Native $py @("-m", "pip", "install", $Torch.Spec, "--index-url", $Torch.Url)
    # Both xgboost distributions install the module `xgboost`: remove the other one first.
    $other = if ($Torch.Extra -eq "gpu") { "xgboost-cpu" } else { "xgboost" }
    Invoke-Native $py @("-m", "pip", "uninstall", "--yes", $other)
    Invoke-Native $py @("-m", "pip", "install", (Get-PackageSpec $Torch.Extra))
}

# The self-test: print the capability and return the worker instances (GPU indexes, or "cpu").
function Invoke-SelfTest($Gpus) {
    Step "Capability self-test"
    $cli = Join-Path $Venv "Scripts\cis490-train.exe"
    $instances = @($Gpus.Indexes)
    if (Test-Path $cli) {
        Remove-Item Env:CUDA_VISIBLE_DEVICES -ErrorAction SilentlyContinue
        & $cli capability
        if ($LASTEXITCODE -ne 0) { Fail "the capability self-test failed (output above)" 1 }
        $cap = (& $cli capability --json | Out-String) | ConvertFrom-Json
        $instances = @($cap.cuda_devices | ForEach-Object { "$($_.index)" })
    } else {
        Write-Host "+ $cli capability"
        Write-Host "(no venv at $Venv yet: GPUs counted with nvidia-smi)"
    }
    if ($instances.Count -eq 0) { return @("cpu") }
    return $instances
}

function Write-WorkerEnv {
    Step "Settings $EnvFile"
    if (Test-Path $EnvFile) {
        Write-Host "kept $EnvFile as it is (edit it by hand to change the settings)"
        foreach ($from in @($BrokerFrom, $(if ($StoreUrl) { "-StoreUrl" } else { "" }), $TokenFrom)) {
            if ($from) { Write-Warning "$from was not applied: $EnvFile already exists" }
        }
        return
    }
    $missing = @()
    if (-not $BrokerUrl) { $missing += "-BrokerUrlFile FILE or CIS490_BROKER_URL" }
    if (-not $StoreUrl) { $missing += "-StoreUrl URL" }
    if (-not $Token) { $missing += "-TokenFile FILE or CIS490_WORKER_TOKEN" }
    if ($missing.Count) {
        Fail "$EnvFile does not exist yet: give $($missing -join '; ') (the worker URL from 'cis490-train acl', the store's address and its token)"
    }
    $content = @(
        "# cis490-train worker settings for every cis490 worker task on this host (see README, Configuration).",
        "# Written once by install-worker-windows.ps1, which never overwrites it; restart the tasks after an edit.",
        "CIS490_BROKER_URL=$BrokerUrl",
        "CIS490_STORE_URL=$StoreUrl",
        "CIS490_WORKER_TOKEN=$Token",
        "CIS490_DATA_DIR=$DataDir",
        "CIS490_WORK_DIR=$(Join-Path $InstallDir 'work')"
    ) -join "`r`n"
    $shown = $content.Replace($Token, "********") -replace '(://[^:/@\s]*:)[^@\s]+@', '$1********@'
    Write-Setting $EnvFile $content $shown
    if (-not (Test-Path (Join-Path $DataDir "schema.json"))) {
        Write-Warning "no dataset at $DataDir yet: copy it there (readable by LOCAL SERVICE), or make the synthetic one with: $Venv\Scripts\cis490-train.exe data synth --out $DataDir"
    }
    if (-not $DryRun) {
        # Administrators and SYSTEM manage it; LOCAL SERVICE (S-1-5-19), which runs the workers, reads it.
        Invoke-Native "icacls.exe" @($EnvFile, "/inheritance:r", "/grant:r", "*S-1-5-32-544:F", "*S-1-5-18:F", "*S-1-5-19:R")
    }
}

# The script each task runs: load worker.env, then the worker in the foreground.
function Write-Runner {
    $content = @'
param([Parameter(Mandatory)][string]$Instance, [Parameter(Mandatory)][string]$Queues)
# Not "Stop": Windows PowerShell turns every line a native command writes to stderr (Celery's log) into an error.
$ErrorActionPreference = "Continue"
$root = $PSScriptRoot
foreach ($line in Get-Content (Join-Path $root "worker.env")) {
    if ($line -match '^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$') { [Environment]::SetEnvironmentVariable($Matches[1], $Matches[2]) }
}
$env:CUDA_DEVICE_ORDER = "PCI_BUS_ID"
$env:CUDA_VISIBLE_DEVICES = $Instance
$logs = Join-Path $root "logs"
New-Item -ItemType Directory -Force -Path $logs | Out-Null
$celery = Join-Path $root "venv\Scripts\celery.exe"
# Restart after a crash; not after a clean stop (0) or exit 2/4 (tiers or settings a restart cannot mend).
while ($true) {
    & $celery -A cis490_train worker -P threads -c 1 -Q $Queues `
        -n "worker-$Instance@$env:COMPUTERNAME" --loglevel INFO *>> (Join-Path $logs "worker-$Instance.log")
    $code = $LASTEXITCODE
    if ($code -in 0, 2, 4) { exit $code }
    Start-Sleep -Seconds 10
}
'@
    Write-Setting $Runner $content
}

function Register-Workers([string[]]$Instances, [string]$WorkerQueues) {
    Step "Scheduled Tasks in $TaskPath"
    $wanted = @($Instances | ForEach-Object { "cis490-worker-$_" })
    if (-not $DryRun) {
        Invoke-Native "icacls.exe" @($InstallDir, "/grant", "*S-1-5-19:(OI)(CI)RX")
        foreach ($dir in @("work", "logs")) {
            $path = Join-Path $InstallDir $dir
            New-Item -ItemType Directory -Force -Path $path | Out-Null
            Invoke-Native "icacls.exe" @($path, "/grant", "*S-1-5-19:(OI)(CI)M")
        }
        foreach ($old in @(Get-ScheduledTask -TaskPath $TaskPath -ErrorAction SilentlyContinue)) {
            if ($wanted -notcontains $old.TaskName) {
                Step "Retiring $($old.TaskName) (no longer on this host)"
                Stop-ScheduledTask -TaskPath $TaskPath -TaskName $old.TaskName
                Unregister-ScheduledTask -TaskPath $TaskPath -TaskName $old.TaskName -Confirm:$false
            }
        }
    }
    foreach ($instance in $Instances) {
        $name = "cis490-worker-$instance"
        $arguments = "-NoProfile -ExecutionPolicy Bypass -File `"$Runner`" -Instance $instance -Queues `"$WorkerQueues`""
        if ($DryRun) {
            Write-Host "+ Register-ScheduledTask -TaskPath $TaskPath -TaskName $name -Trigger (AtStartup) -User '$LocalService' -Action powershell.exe $arguments"
            Write-Host "+ Start-ScheduledTask -TaskPath $TaskPath -TaskName $name"
            continue
        }
        $action = New-ScheduledTaskAction -Execute "powershell.exe" -Argument $arguments -WorkingDirectory $InstallDir
        $trigger = New-ScheduledTaskTrigger -AtStartup
        $principal = New-ScheduledTaskPrincipal -UserId $LocalService -LogonType ServiceAccount -RunLevel Limited
        # No time limit (the default stops a task after 72 h); restart the task if it fails to run.
        $settings = New-ScheduledTaskSettingsSet -ExecutionTimeLimit ([TimeSpan]::Zero) -RestartCount 255 `
            -RestartInterval (New-TimeSpan -Minutes 1) -StartWhenAvailable -AllowStartIfOnBatteries `
            -DontStopIfGoingOnBatteries -MultipleInstances IgnoreNew
        Register-ScheduledTask -TaskPath $TaskPath -TaskName $name -Action $action -Trigger $trigger `
            -Principal $principal -Settings $settings -Force | Out-Null
        if ((Get-ScheduledTask -TaskPath $TaskPath -TaskName $name).State -ne "Running") {
            Start-ScheduledTask -TaskPath $TaskPath -TaskName $name
        }
    }
}

Read-Secrets
Assert-Input
$gpus = Get-Gpus
$torch = Select-Torch $gpus
Install-Venv $torch
$instances = @(Invoke-SelfTest $gpus)
$workerQueues = if ($Queues) { $Queues } elseif ($instances[0] -eq "cpu") { "cpu" } else { "cuda,cpu" }
if ($instances[0] -eq "cpu" -and $workerQueues -match "cuda") { Fail "-Queues ${workerQueues}: this host has no CUDA device; use -Queues cpu" }
Write-Host "workers: $($instances | ForEach-Object { "cis490-worker-$_" })  tiers: $workerQueues"
if ($instances[0] -ne "cpu" -and -not $DryRun) {
    & (Join-Path $Venv "Scripts\python.exe") -c "import sys, torch; sys.exit(not torch.cuda.is_available())"
    if ($LASTEXITCODE -ne 0) { Fail "torch $($torch.Spec) cannot use this host's GPU (driver CUDA $($gpus.Cuda)); name another build with -TorchIndex" 1 }
}
Write-WorkerEnv
Write-Runner
Register-Workers $instances $workerQueues
Step "Done: the workers start at boot as LOCAL SERVICE; logs in $(Join-Path $InstallDir 'logs')"
